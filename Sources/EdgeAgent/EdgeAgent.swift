@main struct EdgeAgentMain { static func main() {} }
