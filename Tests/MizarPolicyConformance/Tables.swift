import MizarAPI
import MizarCore

/// The conformance pods of a step at the addresses `ip` gives.
public func conformancePods(_ step: Conformance.Step, ip: (String, String) -> IPv4Address) -> [ReachabilityModel.Pod] {
    Conformance.namespaces.flatMap { ns in
        Conformance.pods.map { pod in
            var labels = ["pod": pod]
            labels.merge(step.podLabels["\(ns)/\(pod)"] ?? [:]) { $1 }
            let ports = Conformance.namedPorts().map { ($0.name!, $0.port, "\($0.protocol!)") }
            return ReachabilityModel.Pod(namespace: ns, name: pod, labels: labels, ip: ip(ns, pod), ports: ports)
        }
    }
}

/// The model's verdict for every pair and probe, keyed "SRC DST PROTO/PORT".
/// With `loopback`, a pod's probes of itself stay inside it (its own
/// address is local there) and are always admitted.
public func modelTable(_ step: Conformance.Step, pods: [ReachabilityModel.Pod], probes: [(String, Int)], loopback: Bool = false) -> [String: Bool] {
    let model = ReachabilityModel(policies: step.policies, namespaceLabels: step.namespaceLabels)
    var table: [String: Bool] = [:]
    for s in pods {
        for d in pods {
            for (proto, port) in probes {
                table["\(s.id) \(d.id) \(proto)/\(port)"] = (loopback && s == d) || model.allowed(from: s, to: d, proto: proto, port: port)
            }
        }
    }
    return table
}

/// Both tables, one row per source, one column per destination; a cell
/// is one character per probe ('.' admitted, 'X' denied).
public func truthTables(_ expected: [String: Bool], _ observed: [String: Bool], probes: [(String, Int)]) -> String {
    let pods = Conformance.namespaces.flatMap { ns in Conformance.pods.map { "\(ns)/\($0)" } }
    func render(_ t: [String: Bool]) -> String {
        var lines = ["      " + pods.map { $0.padding(toLength: max(probes.count, 3) + 1, withPad: " ", startingAt: 0) }.joined()]
        for s in pods {
            var line = s.padding(toLength: 6, withPad: " ", startingAt: 0)
            for d in pods {
                let cell = probes.map { t["\(s) \(d) \($0.0)/\($0.1)"] == true ? "." : "X" }.joined()
                line += cell.padding(toLength: max(probes.count, 3) + 1, withPad: " ", startingAt: 0)
            }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }
    return "probes per cell: \(probes.map { "\($0.0)/\($0.1)" }.joined(separator: " "))\nexpected (model):\n\(render(expected))\nobserved:\n\(render(observed))"
}

