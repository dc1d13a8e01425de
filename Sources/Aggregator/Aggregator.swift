@main struct AggregatorMain { static func main() {} }
