internal import CSodium
import Foundation

/// libsodium's raw XChaCha20-Poly1305 decryption rate on this machine, chunked and spread over the
/// cores exactly as ``EnvelopeOpener`` does: the ceiling against which opening envelopes is judged.
package enum AEADProbe {
    /// Decrypts `bytes` of random ciphertext (in `chunkSize` chunks, in parallel) `repetitions` times;
    /// returns GB/s of plaintext.
    package static func decryptRate(bytes: Int, chunkSize: Int = 256 * 1024, repetitions: Int) -> Double {
        precondition(Sodium.isReady)
        let tag = Int(crypto_aead_xchacha20poly1305_ietf_abytes())
        let chunks = (bytes + chunkSize - 1) / chunkSize
        var key = [UInt8](repeating: 0, count: Int(crypto_aead_xchacha20poly1305_ietf_keybytes()))
        crypto_aead_xchacha20poly1305_ietf_keygen(&key)
        let nonce = [UInt8](repeating: 3, count: Int(crypto_aead_xchacha20poly1305_ietf_npubbytes()))
        let plain = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes, alignment: 64)
        let sealed = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes + chunks * tag, alignment: 64)
        defer {
            plain.deallocate()
            sealed.deallocate()
        }
        randombytes_buf(plain.baseAddress!, bytes)
        for index in 0..<chunks {
            let start = index * chunkSize, length = min(chunkSize, bytes - start)
            crypto_aead_xchacha20poly1305_ietf_encrypt_detached(
                sealed.baseAddress!.advanced(by: start + index * tag).assumingMemoryBound(to: UInt8.self),
                sealed.baseAddress!.advanced(by: start + index * tag + length).assumingMemoryBound(to: UInt8.self), nil,
                plain.baseAddress!.advanced(by: start).assumingMemoryBound(to: UInt8.self), UInt64(length),
                nil, 0, nil, nonce, key)
        }
        let input = SendableBuffer(sealed), output = SendableBuffer(plain)
        let started = ContinuousClock.now
        for _ in 0..<repetitions {
            EnvelopeKey.forEachChunk(chunks) { [key] index in
                let start = index * chunkSize, length = min(chunkSize, bytes - start)
                let cipher = input.buffer.baseAddress!.advanced(by: start + index * tag).assumingMemoryBound(to: UInt8.self)
                let result = crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
                    output.buffer.baseAddress!.advanced(by: start).assumingMemoryBound(to: UInt8.self), nil,
                    cipher, UInt64(length), cipher + length, nil, 0, nonce, key)
                precondition(result == 0, "AEAD probe failed to decrypt its own ciphertext")
            }
        }
        let elapsed = (ContinuousClock.now - started).components
        return Double(bytes * repetitions) / (Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18) / 1e9
    }
}
