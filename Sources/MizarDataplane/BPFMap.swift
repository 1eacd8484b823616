internal import CLibBPF
import Glibc
import MizarCore

/// A BPF map seen through fixed-layout Swift types (the ABI's C structs).
/// Every operation is one syscall whose result is checked.
struct BPFMap<Key: BitwiseCopyable, Value: BitwiseCopyable>: Sendable {
    let name: String
    let fd: Int32

    init(name: String, fd: Int32) {
        self.name = name
        self.fd = fd
    }

    func update(_ key: Key, _ value: Value, flags: UInt64 = UInt64(BPF_ANY)) throws(SystemError) {
        var k = key, v = value
        try SystemError.check(bpf_map_update_elem(fd, &k, &v, flags), "bpf_map_update_elem", name)
    }

    func lookup(_ key: Key) throws(SystemError) -> Value? {
        var k = key
        return try withUnsafeTemporaryAllocation(of: Value.self, capacity: 1) { buffer throws(SystemError) -> Value? in
            let r = bpf_map_lookup_elem(fd, &k, buffer.baseAddress!)
            if r == -ENOENT { return nil }
            try SystemError.check(r, "bpf_map_lookup_elem", name)
            return buffer[0]
        }
    }

    /// Returns whether there was an entry to delete.
    @discardableResult
    func delete(_ key: Key) throws(SystemError) -> Bool {
        var k = key
        let r = bpf_map_delete_elem(fd, &k)
        if r == -ENOENT { return false }
        try SystemError.check(r, "bpf_map_delete_elem", name)
        return true
    }

    func keys() throws(SystemError) -> [Key] {
        var result: [Key] = []
        var next = try withUnsafeTemporaryAllocation(of: Key.self, capacity: 1) { buffer throws(SystemError) -> Key? in
            let r = bpf_map_get_next_key(fd, nil, buffer.baseAddress!)
            if r == -ENOENT { return nil }
            try SystemError.check(r, "bpf_map_get_next_key", name)
            return buffer[0]
        }
        while var current = next {
            result.append(current)
            next = try withUnsafeTemporaryAllocation(of: Key.self, capacity: 1) { buffer throws(SystemError) -> Key? in
                let r = bpf_map_get_next_key(fd, &current, buffer.baseAddress!)
                if r == -ENOENT { return nil }
                try SystemError.check(r, "bpf_map_get_next_key", name)
                return buffer[0]
            }
        }
        return result
    }

    func entries() throws(SystemError) -> [(key: Key, value: Value)] {
        var result: [(key: Key, value: Value)] = []
        for key in try keys() {
            if let value = try lookup(key) { result.append((key, value)) }
        }
        return result
    }

    /// Deletes every entry. Keys are gathered first: deleting while walking
    /// a hash map restarts the walk.
    func clear() throws(SystemError) {
        for key in try keys() { try delete(key) }
    }

    /// Writes many entries in one syscall (hash maps).
    func updateBatch(keys: [Key], values: [Value]) throws(SystemError) {
        precondition(keys.count == values.count)
        var done = 0
        while done < keys.count {
            var count = UInt32(keys.count - done)
            let r = keys.withUnsafeBufferPointer { k in
                values.withUnsafeBufferPointer { v in
                    mz_map_update_batch(fd, k.baseAddress! + done, v.baseAddress! + done, &count, 0)
                }
            }
            try SystemError.check(r, "bpf_map_update_batch", name)
            done += Int(count)
        }
    }
}

/// A per-CPU array: one value per possible CPU for each index.
struct PerCPUArray<Value: BitwiseCopyable>: Sendable {
    let name: String
    let fd: Int32
    let cpus: Int

    init(name: String, fd: Int32) throws(SystemError) {
        self.name = name
        self.fd = fd
        self.cpus = Int(try SystemError.check(libbpf_num_possible_cpus(), "libbpf_num_possible_cpus"))
    }

    func values(at index: UInt32) throws(SystemError) -> [Value] {
        try lookupPerCPU(fd: fd, name: name, key: index, cpus: cpus) ?? []
    }

    func zero(at index: UInt32) throws(SystemError) {
        let stride = (MemoryLayout<Value>.size + 7) & ~7
        var key = index
        let raw = UnsafeMutableRawPointer.allocate(byteCount: stride * cpus, alignment: 8)
        defer { raw.deallocate() }
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: stride * cpus)
        try SystemError.check(bpf_map_update_elem(fd, &key, raw, UInt64(BPF_ANY)), "bpf_map_update_elem", name)
    }
}

/// A map whose values are written and read as raw bytes: for values too
/// large to import into Swift as a C struct (a service's Maglev table).
struct RawValueMap<Key: BitwiseCopyable>: Sendable {
    let name: String
    let fd: Int32
    let valueSize: Int

    func update(_ key: Key, _ value: [UInt8], flags: UInt64 = UInt64(BPF_ANY)) throws(SystemError) {
        precondition(value.count == valueSize, "\(name): value of \(value.count) bytes, want \(valueSize)")
        var k = key
        try SystemError.check(value.withUnsafeBytes { bpf_map_update_elem(fd, &k, $0.baseAddress!, flags) }, "bpf_map_update_elem", name)
    }

    func lookup(_ key: Key) throws(SystemError) -> [UInt8]? {
        var k = key
        var buffer = [UInt8](repeating: 0, count: valueSize)
        let r = buffer.withUnsafeMutableBytes { bpf_map_lookup_elem(fd, &k, $0.baseAddress!) }
        if r == -ENOENT { return nil }
        try SystemError.check(r, "bpf_map_lookup_elem", name)
        return buffer
    }

    @discardableResult
    func delete(_ key: Key) throws(SystemError) -> Bool {
        try BPFMap<Key, UInt8>(name: name, fd: fd).delete(key)
    }

    func keys() throws(SystemError) -> [Key] { try BPFMap<Key, UInt8>(name: name, fd: fd).keys() }
}

/// A per-CPU hash: one value per possible CPU for each key.
struct PerCPUHash<Key: BitwiseCopyable, Value: BitwiseCopyable>: Sendable {
    let name: String
    let fd: Int32
    let cpus: Int

    init(name: String, fd: Int32) throws(SystemError) {
        self.name = name
        self.fd = fd
        self.cpus = Int(try SystemError.check(libbpf_num_possible_cpus(), "libbpf_num_possible_cpus"))
    }

    func values(_ key: Key) throws(SystemError) -> [Value]? {
        try lookupPerCPU(fd: fd, name: name, key: key, cpus: cpus)
    }

    /// Makes `key` with every CPU's value zero, unless it exists (whose
    /// values are kept). Returns whether it was made.
    @discardableResult
    func insertZero(_ key: Key) throws(SystemError) -> Bool {
        let stride = (MemoryLayout<Value>.size + 7) & ~7
        var k = key
        let zeros = [UInt8](repeating: 0, count: stride * cpus)
        let r = zeros.withUnsafeBytes { bpf_map_update_elem(fd, &k, $0.baseAddress!, UInt64(BPF_NOEXIST)) }
        if r == -EEXIST { return false }
        try SystemError.check(r, "bpf_map_update_elem", name)
        return true
    }

    @discardableResult
    func delete(_ key: Key) throws(SystemError) -> Bool {
        try BPFMap<Key, UInt8>(name: name, fd: fd).delete(key)
    }

    func keys() throws(SystemError) -> [Key] { try BPFMap<Key, UInt8>(name: name, fd: fd).keys() }
}

/// One value per possible CPU, or nil when the key is missing. The kernel
/// rounds each CPU's slot up to 8 bytes.
func lookupPerCPU<Key: BitwiseCopyable, Value: BitwiseCopyable>(fd: Int32, name: String, key: Key, cpus: Int) throws(SystemError) -> [Value]? {
    let stride = (MemoryLayout<Value>.size + 7) & ~7
    var k = key
    let raw = UnsafeMutableRawPointer.allocate(byteCount: stride * cpus, alignment: 8)
    defer { raw.deallocate() }
    let r = bpf_map_lookup_elem(fd, &k, raw)
    if r == -ENOENT { return nil }
    try SystemError.check(r, "bpf_map_lookup_elem", name)
    return (0..<cpus).map { raw.load(fromByteOffset: $0 * stride, as: Value.self) }
}
