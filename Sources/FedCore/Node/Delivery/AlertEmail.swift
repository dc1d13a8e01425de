package import FedLogic
package import Foundation

/// Alerts as e-mail (RFC 5322): one alert per message, or a digest of several. Plain text a person reads,
/// then the alerts' JSON (docs/ALERTS.md) for whoever automates on it. Header `FedDrift-Alert-Ids` lists
/// every alert id in the message; `Message-ID` is derived from them, so a re-sent message is recognisable.
package enum AlertEmail {
    package static func message(for alerts: [DriftAlert], documents: [String], from: String, to: [String],
                                date: Date = Date()) -> String {
        let subject: String
        var body: String
        if alerts.count == 1, let alert = alerts.first {
            subject = "[FedDrift] \(title(alert.kind)): shopper \(alert.user) in \(alert.region)"
            body = summary(alert) + "\n\nThe alert as JSON (schema: docs/ALERTS.md):\n" + documents.joined(separator: "\n") + "\n"
        } else {
            let regions = Set(alerts.map(\.region)).sorted().joined(separator: ", ")
            let counts = DriftAlert.Kind.allCases.compactMap { kind -> String? in
                let count = alerts.filter { $0.kind == kind }.count
                return count == 0 ? nil : "\(count) \(title(kind).lowercased())"
            }.joined(separator: ", ")
            subject = "[FedDrift] Digest: \(alerts.count) alerts from \(regions) (\(counts))"
            body = "\(alerts.count) alerts since the last digest (\(counts)).\n"
            for (index, alert) in alerts.enumerated() {
                body += "\n\(index + 1). " + summary(alert) + "\n"
            }
            body += "\nThe alerts as JSON lines (schema: docs/ALERTS.md):\n" + documents.joined(separator: "\n") + "\n"
        }
        let ids = alerts.map(\.id)
        let identity = ids.count == 1 ? ids[0] : "digest-\(ids[0])-\(ids.count)"
        var headers = [
            "From: \(from)",
            "To: \(to.joined(separator: ", "))",
            "Subject: \(encodedHeader(subject))",
            "Date: \(rfc5322Date(date))",
            "Message-ID: <\(identity)@feddrift>",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            // SMTP lines stop at 998 bytes and are 7-bit unless the server says otherwise; the alert JSON
            // is one long line and explanations name categories in any script. Quoted-printable keeps
            // the text readable and every line short.
            "Content-Transfer-Encoding: quoted-printable",
        ]
        // Every id, folded (RFC 5322 §2.2.3) so that a digest of hundreds stays within the line limit.
        var idsHeader = "FedDrift-Alert-Ids:", line = idsHeader.count
        for id in ids.map(headerSafe) {
            if line + 1 + id.count > 76 {
                idsHeader += "\r\n"
                line = 0
            }
            idsHeader += " " + id
            line += 1 + id.count
        }
        return (headers.map(headerSafe) + [idsHeader]).joined(separator: "\r\n") + "\r\n\r\n" + quotedPrintable(body)
    }

    /// RFC 2045 §6.7 quoted-printable of UTF-8 `text`: lines end in CRLF, none longer than 76 characters
    /// (soft breaks `=`), bytes outside printable ASCII (and `=`, and a space or tab ending a line) as `=XX`.
    static func quotedPrintable(_ text: String) -> String {
        var out = ""
        for line in text.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n", omittingEmptySubsequences: false) {
            var current = ""
            let bytes = Array(line.utf8)
            for (index, byte) in bytes.enumerated() {
                let last = index == bytes.count - 1
                let literal = (byte >= 33 && byte <= 126 && byte != UInt8(ascii: "=")) || ((byte == 32 || byte == 9) && !last)
                let piece = literal ? String(UnicodeScalar(byte)) : String(format: "=%02X", byte)
                if current.utf8.count + piece.utf8.count > 75 {
                    out += current + "=\r\n"
                    current = ""
                }
                current += piece
            }
            out += current + "\r\n"
        }
        return out
    }

    static func title(_ kind: DriftAlert.Kind) -> String {
        switch kind {
        case .interestShift: "Interest shift"
        case .churnRisk: "Churn risk"
        }
    }

    /// What a person reads about one alert.
    static func summary(_ alert: DriftAlert) -> String {
        var lines = ["\(title(alert.kind)) for shopper \(alert.user) in \(alert.region) (alert \(alert.id))."]
        if !alert.explanation.isEmpty { lines.append(alert.explanation) }
        let when = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval(alert.time)))
        lines.append("Raised for the event at \(when) by model version \(alert.modelVersion); score "
                     + String(format: "%.2f", alert.score) + " against the threshold " + String(format: "%.2f", alert.threshold) + ".")
        func shares(_ categories: [DriftAlert.Category]) -> String {
            categories.map { "\($0.category) (" + String(format: "%.0f%% -> %.0f%%", $0.before * 100, $0.after * 100) + ")" }
                .joined(separator: ", ")
        }
        if !alert.emerging.isEmpty { lines.append("Emerging categories: " + shares(alert.emerging)) }
        if !alert.fading.isEmpty { lines.append("Fading categories: " + shares(alert.fading)) }
        if !alert.recommendations.isEmpty {
            lines.append("Recommend now: " + alert.recommendations.prefix(10)
                .map { "item \($0.item) (category \($0.category))" }.joined(separator: ", "))
        }
        return lines.joined(separator: "\n")
    }

    /// A header line with no line break in it (a value cannot add headers).
    static func headerSafe(_ line: String) -> String {
        String(line.unicodeScalars.filter { $0 != "\r" && $0 != "\n" }.map(Character.init))
    }

    /// RFC 2047 encoded word for a non-ASCII header value.
    static func encodedHeader(_ value: String) -> String {
        value.unicodeScalars.allSatisfy(\.isASCII) ? value : "=?utf-8?b?\(Data(value.utf8).base64EncodedString())?="
    }

    static func rfc5322Date(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss '+0000'"
        return formatter.string(from: date)
    }
}
