package import FedLogic
package import Foundation

/// Outbox messages (alerts, demand-trend warnings) as e-mail (RFC 5322): one per message, or a digest of
/// several. Plain text a person reads, then the JSON (docs/ALERTS.md) for whoever automates on it. Header
/// `FedDrift-Alert-Ids` lists every id in the message; `Message-ID` is derived from them, so a re-sent
/// message is recognisable.
package enum AlertEmail {
    /// `noun` names the messages in a digest ("alerts", "demand-trend warnings").
    package static func message(for items: [OutboxItem], from: String, to: [String], noun: String = "alerts",
                                date: Date = Date()) -> String {
        let subject: String
        var body: String
        if items.count == 1, let item = items.first {
            subject = item.subject
            body = item.text + "\n\nAs JSON (schema: docs/ALERTS.md):\n" + item.json + "\n"
        } else {
            var kinds: [String] = []
            for item in items where !kinds.contains(item.kind) { kinds.append(item.kind) }
            let counts = kinds.map { kind in "\(items.filter { $0.kind == kind }.count) \(title(kind).lowercased())" }
                .joined(separator: ", ")
            subject = "[FedDrift] Digest: \(items.count) \(noun) (\(counts))"
            body = "\(items.count) \(noun) since the last digest (\(counts)).\n"
            for (index, item) in items.enumerated() { body += "\n\(index + 1). " + item.text + "\n" }
            body += "\nAs JSON lines (schema: docs/ALERTS.md):\n" + items.map(\.json).joined(separator: "\n") + "\n"
        }
        let ids = items.map(\.id)
        let identity = ids.count == 1 ? ids[0] : "digest-\(ids[0])-\(ids.count)"
        let headers = [
            "From: \(from)",
            "To: \(to.joined(separator: ", "))",
            "Subject: \(encodedHeader(subject))",
            "Date: \(rfc5322Date(date))",
            "Message-ID: <\(identity)@feddrift>",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            // SMTP lines stop at 998 bytes and are 7-bit unless the server says otherwise; the JSON is one
            // long line and explanations name categories in any script. Quoted-printable keeps the text
            // readable and every line short.
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

    /// A kind as people read it: `interest_shift` → Interest shift.
    static func title(_ kind: String) -> String {
        let words = kind.replacingOccurrences(of: "_", with: " ")
        return words.prefix(1).uppercased() + words.dropFirst()
    }

    /// One alert's subject line.
    package static func subject(_ alert: DriftAlert) -> String {
        "[FedDrift] \(title(alert.kind.rawValue)): shopper \(alert.user) in \(alert.region)"
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

    /// What a person reads about one alert.
    package static func summary(_ alert: DriftAlert) -> String {
        var lines = ["\(title(alert.kind.rawValue)) for shopper \(alert.user) in \(alert.region) (alert \(alert.id))."]
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
