// librdkafka (Debian's librdkafka-dev): the Kafka consumer and producer, and the mock cluster the tests and
// `edge-agent bench ingest --kafka-mock` run against. Only FedCore/IO/Kafka imports this module.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
