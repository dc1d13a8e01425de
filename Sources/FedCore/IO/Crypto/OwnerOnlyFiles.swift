import Glibc

/// Files and folders a FedDrift process creates are its owner's alone (mode 0600, folders 0700): event
/// stores, alerts, models, ledgers and status files describe shoppers, and another account on the node
/// must not read them. Key files set their modes explicitly (`identity.public` stays 0644).
package enum OwnerOnlyFiles {
    /// Sets the process's umask to 077. Call first thing in `main`, before any file is created.
    package static func enable() { _ = umask(0o077) }
}
