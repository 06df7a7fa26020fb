import Foundation
import ModelFormats

extension Fixtures {
    /// Writes `path`'s store to `out` with its manifest changed by `edit` and every checksum
    /// recomputed, so only the edit is wrong (as in a file crafted to pass the checksums).
    public static func rewriteStore(_ path: String, to out: String, _ edit: (inout MoEStoreFile.Manifest) -> Void) throws {
        let store = try MoEStoreFile(path: path)
        var manifest = store.manifest
        edit(&manifest)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = try encoder.encode(manifest)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path)).prefix(store.header.manifestOffset)
        bytes.append(json)
        let header = MoEStoreFile.Header(manifestOffset: store.header.manifestOffset, manifestLength: json.count,
                                         manifestChecksum: XXH64.hash(Array(json)), fileSize: bytes.count)
        bytes.replaceSubrange(0..<MoEStoreFile.headerSize, with: header.encode())
        try bytes.write(to: URL(fileURLWithPath: out))
    }
}
