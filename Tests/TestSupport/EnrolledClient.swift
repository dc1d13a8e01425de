package import FedIO
import FedNode
import Foundation

/// An enrolled agent played in-process by a test with its real keys from a ``Federation``: a DEALER
/// linked to the aggregator exactly as the agent's own link is, and the agent's sealer and opener, so
/// that the test can send whatever an insider could.
package struct EnrolledClient: Sendable {
    package let context: ZMQContext
    package let channel: ZMQChannel
    package let sealer: EnvelopeSealer
    package let opener: EnvelopeOpener
    package let identity: NodeIdentity

    package init(_ federation: Federation, agentID: String) throws {
        let configuration = try EdgeAgentConfiguration.load(path: federation.path("\(agentID).yaml"))
        identity = try KeyDirectory(path: federation.path("keys/\(agentID)")).readIdentity()
        let aggregator = try KeyDirectory.readPublicIdentity(file: federation.path("keys/aggregator/identity.public"))
        context = try ZMQContext()
        channel = try ZMQChannel(context: context, configuration: .init(
            kind: .dealer, options: AgentLink.options(configuration: configuration, identity: identity, aggregator: aggregator),
            connect: [configuration.aggregator]))
        sealer = EnvelopeSealer(identity: identity, senderID: agentID, recipient: aggregator.box)
        opener = EnvelopeOpener(recipient: identity.box, senders: ["aggregator": aggregator.signing])
    }
}
