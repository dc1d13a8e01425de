@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Foundation
import Testing

@Suite("Configuration files")
struct ConfigurationTests {
    private static let configs = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../configs").standardized

    @Test("The example configurations in configs/ load and validate")
    func examples() throws {
        let aggregator = try AggregatorConfiguration.load(path: Self.configs.appendingPathComponent("aggregator.yaml").path)
        #expect(aggregator.agents.map(\.id) == ["region-1", "region-2", "region-3"])
        #expect(aggregator.rounds.minAgents == 2 && aggregator.model.shape == .small)
        #expect(aggregator.stateDirectory.hasSuffix("state/aggregator"))
        for index in 1...3 {
            let agent = try EdgeAgentConfiguration.load(path: Self.configs.appendingPathComponent("agent-\(index).yaml").path)
            #expect(agent.id == "region-\(index)")
            #expect(agent.catalog?.hasSuffix("state/catalog.txt") == true)
            #expect(agent.announcements == aggregator.announce)
        }
    }

    @Test("Out-of-range round settings are refused with the key named")
    func refusals() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-config-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let cases = [
            ("rounds: {min_agents: 3}", "rounds.min_agents"),
            ("rounds: {sampling_rate: 1.5}", "rounds.sampling_rate"),
            ("model: {preset: huge}", "model.preset"),
            ("server_optimizer: {kind: rmsprop}", "server_optimizer.kind"),
            ("announce: tcp://127.0.0.1:7700", "announce"),
        ]
        for (line, key) in cases {
            let path = directory.appendingPathComponent("aggregator.yaml").path
            try """
                key_directory: keys
                agents: [{id: a, public_key_file: a.public}, {id: b, public_key_file: b.public}]
                \(line)

                """.write(toFile: path, atomically: true, encoding: .utf8)
            #expect {
                _ = try AggregatorConfiguration.load(path: path)
            } throws: { error in
                guard case let ConfigError.invalidValue(found, _, _) = error else { return false }
                return found == key
            }
        }
    }

    @Test("An agent loads fitted detector settings from alerts.detector_file; a bad file or both keys are refused")
    func detectorFile() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-config-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("agent.yaml").path
        func write(_ alerts: String) throws {
            try """
                id: region-1
                key_directory: keys
                aggregator_public_key_file: aggregator.public
                alerts: \(alerts)

                """.write(toFile: path, atomically: true, encoding: .utf8)
        }
        try #"{"novelty_concentration": 6, "hazard": 0.01}"#.write(
            toFile: directory.appendingPathComponent("fitted.json").path, atomically: true, encoding: .utf8)
        try write("{detector_file: fitted.json}")
        let loaded = try EdgeAgentConfiguration.load(path: path)
        #expect(loaded.alerts.detector.noveltyConcentration == 6 && loaded.alerts.detector.hazard == 0.01)
        #expect(loaded.alerts.detector.runLengths == SwitchDetector.Settings().runLengths)
        try #"{"hazard": 2}"#.write(toFile: directory.appendingPathComponent("bad.json").path, atomically: true,
                                       encoding: .utf8)
        for alerts in ["{detector_file: bad.json}", "{detector_file: missing.json}"] {
            try write(alerts)
            #expect {
                _ = try EdgeAgentConfiguration.load(path: path)
            } throws: { error in
                guard case let ConfigError.invalidValue(key, _, _) = error else { return false }
                return key == "alerts.detector_file"
            }
        }
        try write("{detector_file: fitted.json, detector: {hazard: 0.01}}")
        #expect(throws: ConfigError.self) { _ = try EdgeAgentConfiguration.load(path: path) }
    }
}
