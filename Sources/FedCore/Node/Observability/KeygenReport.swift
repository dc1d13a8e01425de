package import FedIO
import FedLogic

/// What `keygen` tells an operator after writing a node's keys.
package enum KeygenReport {
    package static func text(role: String, directory: KeyDirectory, identity: NodePublicIdentity) -> String {
        """
        Wrote a new \(role) identity:
          \(directory.secretFilePath)  (secret, mode 0600: never copy it off this machine)
          \(directory.publicFilePath)  (public: safe to share)
          box key  \(identity.box.fingerprint)…  (CURVE link and envelope recipient)
          sign key \(identity.signing.fingerprint)…  (envelope signatures)
        """
    }
}
