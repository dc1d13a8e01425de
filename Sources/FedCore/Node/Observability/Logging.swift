package import Logging

extension Logger {
    /// A logger for an executable: stderr, at `level`. Executables bootstrap logging; FedCore never does.
    package static func bootstrapForTool(label: String, level: Logger.Level) -> Logger {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: label)
        logger.logLevel = level
        return logger
    }
}

