import FedIO
import FedLogic
import FedModel
import FedNode
import FedTools
import Foundation
import Logging
import ServiceLifecycle

/// Answers recommendation queries from REQ clients (a ROUTER socket, so replies never block the loop):
/// request `{"user": U, "n": N}` (JSON), reply `{"user": U, "recommendations": [{"item", "category",
/// "score"}]}` or `{"error": "..."}`.
struct RecommendService: Service {
    let channel: ZMQChannel
    let scoring: DriftScoring
    let logger: Logger

    struct Query: Decodable {
        var user: UInt64
        var n: Int?
    }

    struct Answer: Encodable {
        var user: UInt64
        var recommendations: [DriftAlert.Recommendation]
    }

    func run() async throws {
        defer { channel.close() }
        for try await message in channel.messages.cancelOnGracefulShutdown() {
            let reply: Data
            do {
                let query = try JSONDecoder().decode(Query.self, from: Data(message.frames.last ?? []))
                let count = min(max(query.n ?? 10, 1), 100)
                if let items = scoring.recommend(user: query.user, count: count) {
                    reply = try JSONEncoder().encode(Answer(user: query.user, recommendations: items))
                } else {
                    reply = Data(#"{"error":"user \#(query.user) has no scored events yet (or no model yet)"}"#.utf8)
                }
            } catch {
                reply = Data(#"{"error":"expected {\"user\": <id>, \"n\": <count>}"}"#.utf8)
            }
            // REQ envelope: [routing id, empty delimiter, body] — answer on the same route.
            let route = Array(message.frames.dropLast())
            do {
                try await channel.send(route + [Array(reply)])
            } catch {
                logger.debug("Could not answer a recommendation query", metadata: ["error": "\(error)"])
            }
        }
    }
}
