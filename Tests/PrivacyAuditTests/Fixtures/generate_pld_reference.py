#!/usr/bin/env python3
"""Writes pld_reference.json: epsilons from Google's dp-accounting PLDAccountant (defaults:
value_discretization_interval 1e-4, pessimistic connect-the-dots, ADD_OR_REMOVE_ONE) for FedDrift's
Audit 10. Complements ../../../../shared/reference/dp_accounting_vectors.json (single mechanisms on
a grid) with points off that grid and with the round FedDrift's agents actually release: a
Poisson-subsampled update, a Poisson-subsampled alert-rate release with its own multiplier and an
unsampled evaluation, composed over the rounds.

    python3 -m venv /tmp/dpenv && /tmp/dpenv/bin/pip install dp-accounting==0.6.0
    /tmp/dpenv/bin/python generate_pld_reference.py > pld_reference.json
"""
import importlib.metadata
import json
import sys

import dp_accounting
from dp_accounting import pld


def gaussian(q, z):
    event = dp_accounting.GaussianDpEvent(z)
    return event if q >= 1 else dp_accounting.PoissonSampledDpEvent(q, event)


def epsilon(events, rounds, delta):
    accountant = pld.PLDAccountant()
    accountant.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.ComposedDpEvent(events), rounds))
    return accountant.get_epsilon(delta)


single = [  # (q, z, rounds, delta): off the shared grid
    (0.002, 0.846, 2000, 1e-5), (0.03, 0.908, 250, 1e-5), (0.2, 3.823, 250, 1e-8), (0.3, 1.3, 57, 1e-7),
    (0.7, 1.021, 3, 1e-8), (0.5, 1.605224, 50, 1e-6), (1.0, 2.582, 1, 1e-8), (0.25, 0.7, 40, 1e-6),
]
composed = [  # (q, update z, alert-rate z, evaluation z, rounds, delta)
    (0.1, 1.0, 2.0, 20.0, 50, 1e-6), (0.5, 1.6, 3.1, 15.0, 12, 1e-6), (0.02, 0.8, 1.5, 10.0, 300, 1e-7),
    (0.05, 1.2, 2.5, 8.0, 100, 1e-6),
]
rows = []
for q, z, rounds, delta in single:
    rows.append({"mechanisms": [{"q": q, "z": z}], "rounds": rounds, "delta": delta,
                 "eps_pld": epsilon([gaussian(q, z)], rounds, delta)})
for q, z, zh, ze, rounds, delta in composed:
    mechanisms = [{"q": q, "z": z}, {"q": q, "z": zh}, {"q": 1.0, "z": ze}]
    rows.append({"mechanisms": mechanisms, "rounds": rounds, "delta": delta,
                 "eps_pld": epsilon([gaussian(m["q"], m["z"]) for m in mechanisms], rounds, delta)})
json.dump({"meta": {"dp_accounting": importlib.metadata.version("dp-accounting"),
                    "python": sys.version.split()[0],
                    "accountant": "PLDAccountant() defaults; each row composes its mechanisms once per round"},
           "rows": rows}, sys.stdout, indent=1)
print()
