package import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Asks a running node's operator endpoint (`status` commands): finds its port (`http.listen`, or the
/// `http.json` the process wrote when the port is ephemeral), reads its token, and GETs a path.
package enum OperatorClient {
    package enum Failure: Error, CustomStringConvertible {
        case notRunning(String)
        case refused(status: Int, address: String)
        case token(String)

        package var description: String {
            switch self {
            case let .notRunning(why): "not running: \(why)"
            case let .refused(status, address):
                "\(address) refused the request (HTTP \(status))\(status == 401 ? ": the token does not match http.token_file" : "")"
            case let .token(why): why
            }
        }
    }

    /// What a `status` command prints: the endpoint's `/status` as is (`json`), or `summary` of it; a
    /// node that does not answer is one line naming `role` and why. Returns whether it answered.
    package static func printStatus(role: String, settings: HTTPSettings, directory: String, json: Bool,
                                    summary: ([String: Any]) -> String) async -> Bool {
        let body: Data
        do {
            body = try await get("/status", settings: settings, directory: directory)
        } catch {
            print("The \(role) is \(error)")
            return false
        }
        if json {
            print(String(decoding: body, as: UTF8.self))
        } else if let status = try? JSONSerialization.jsonObject(with: body) as? [String: Any] {
            print(summary(status))
        } else {
            print("The \(role) answered /status with something that is not a JSON object")
            return false
        }
        return true
    }

    /// `host:port` of the running endpoint (the port from `http.json` when it is ephemeral).
    static func address(settings: HTTPSettings, directory: String) throws(Failure) -> (host: String, port: Int) {
        var port = settings.port
        if port == 0 {
            let file = HTTPAnnouncement.path(in: directory)
            guard let data = FileManager.default.contents(atPath: file),
                  let announcement = try? JSONDecoder().decode(HTTPAnnouncement.self, from: data) else {
                throw .notRunning("no \(file) (the process writes it when its endpoint starts)")
            }
            port = announcement.port
        }
        return (settings.host.contains(":") ? "[\(settings.host)]" : settings.host, port)
    }

    /// The address a browser opens to see `path`: through `/login` with the token, which sets it as a
    /// cookie (the URL holds the token: share it as you would the token file).
    package static func browserURL(_ path: String, settings: HTTPSettings, directory: String) throws(Failure) -> String {
        let (host, port) = try address(settings: settings, directory: directory)
        guard let tokenFile = settings.tokenFile else { return "http://\(host):\(port)\(path)" }
        guard let data = FileManager.default.contents(atPath: tokenFile) else {
            throw .token("cannot read the endpoint's token at \(tokenFile) (http.token_file)")
        }
        let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let encoded = token.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? token
        return "http://\(host):\(port)/login?next=\(path)&token=\(encoded)"
    }

    package static func get(_ path: String, settings: HTTPSettings, directory: String) async throws(Failure) -> Data {
        let (host, port) = try address(settings: settings, directory: directory)
        guard let url = URL(string: "http://\(host):\(port)\(path)") else { throw .notRunning("bad address \(host):\(port)") }
        var request = URLRequest(url: url, timeoutInterval: 5)
        if let tokenFile = settings.tokenFile {
            guard let token = FileManager.default.contents(atPath: tokenFile) else {
                throw .token("cannot read the endpoint's token at \(tokenFile) (http.token_file)")
            }
            let value = String(decoding: token, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            request.setValue("Bearer " + value, forHTTPHeaderField: "Authorization")
        }
        let data: Data, response: URLResponse
        do {
            (data, response) = try await URLSession.shared.data(for: request)
        } catch {
            throw .notRunning("no answer at \(host):\(port) (\(error.localizedDescription))")
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard status == 200 else { throw .refused(status: status, address: "\(host):\(port)") }
        return data
    }
}
