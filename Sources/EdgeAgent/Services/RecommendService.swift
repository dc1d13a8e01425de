import FedIO
import FedLogic
import FedModel
import FedNode
import FedTools
import Foundation
import Logging
import ServiceLifecycle

/// Answers ``RecommendationQuery``s from REQ clients (a ROUTER socket, so replies never block the loop)
/// with a ``RecommendationAnswer``, from the shoppers' live state on the scoring thread.
struct RecommendService: Service {
    let channel: ZMQChannel
    let scoring: LiveScoring
    let logger: Logger

    func run() async throws {
        defer { channel.close() }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        for try await message in channel.messages.cancelOnGracefulShutdown() {
            let answer: RecommendationAnswer
            if let query = try? JSONDecoder().decode(RecommendationQuery.self, from: Data(message.frames.last ?? [])) {
                if let items = await scoring.recommend(user: query.user, count: query.count) {
                    answer = RecommendationAnswer(user: query.user, recommendations: items)
                } else {
                    answer = .unknownUser(query.user)
                }
            } else {
                answer = .malformedQuery
            }
            // REQ envelope: [routing id, empty delimiter, body] — answer on the same route.
            let route = Array(message.frames.dropLast())
            do {
                try await channel.send(route + [Array(try encoder.encode(answer))])
            } catch {
                logger.debug("Could not answer a recommendation query", metadata: ["error": "\(error)"])
            }
        }
    }
}
