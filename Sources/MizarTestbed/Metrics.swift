import Glibc
import MizarCore
import MizarSystem

/// The value of one series (name and labels, as written) in Prometheus'
/// text format; nil when the text has no such series.
public func metricValue(_ text: String, _ series: String) -> Double? {
    for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
        return Double(line.dropFirst(series.count + 1).split(separator: " ").first ?? "")
    }
    return nil
}

/// Debian's promtool judges metrics text as Prometheus itself does: its
/// exit status and what it said.
public func promtoolCheck(_ text: String) async throws -> (status: Int32, output: String) {
    let file = "/tmp/mizar-metrics-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).txt"
    try writeFile(file, text)
    defer { unlink(file) }
    return try await onOwnThread { runCapturing(["sh", "-c", "promtool check metrics < \(file)"]) }
}
