import Glibc

/// CLOCK_MONOTONIC, the clock the kernel stamps BPF map entries with
/// (bpf_ktime_get_ns), in nanoseconds.
public func monotonicNanoseconds() -> UInt64 {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
}

/// The same clock in seconds, for deadlines and elapsed times.
public func monotonicSeconds() -> Double { Double(monotonicNanoseconds()) / 1e9 }
