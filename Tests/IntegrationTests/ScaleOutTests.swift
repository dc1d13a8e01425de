import Testing

/// The scale-out suites each start several aggregators and agents (and a PostgreSQL server): they run one at a
/// time, so that together they do not starve the timing-bound tests running beside them on a 2-core machine
/// (a secure round's key step, a misbehaving agent's checks inside a round's deadline).
@Suite("Scale-out: a highly available aggregator, hierarchical aggregation, PostgreSQL state (one suite at a time)",
       .serialized)
enum ScaleOutTests {}
