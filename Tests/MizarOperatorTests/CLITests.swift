import Glibc
import MizarAPI
import MizarEtcd
import MizarStore
import MizarCore
import MizarTestbed
import Testing

/// mizarctl's object commands as a user runs them, against a real etcd.
struct CLI {
    let root: String
    let etcd: EtcdServer

    init(_ test: String) async throws {
        etcd = try await EtcdServer.shared()
        root = "/cli-\(getpid())/\(test)/"
    }

    /// mizarctl, on a thread of its own (it may wait for seconds).
    func run(_ args: [String], stdin: String? = nil) async -> (status: Int32, output: String) {
        let argv = [siblingExecutable("mizarctl")] + args + ["--etcd", etcd.endpoint, "--root", root] + Testbed.flags(etcd.operatorTLS!)
        return (try? await onOwnThread {
            guard let stdin else { return runCapturing(argv) }
            let path = "/tmp/mizarctl-stdin-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            _ = try? writeText(path, stdin)
            defer { unlink(path) }
            return runCapturing(["sh", "-c", "exec \"$0\" \"$@\" < \(path)"] + argv)
        }) ?? (-1, "no thread to run mizarctl on")
    }

    func file(_ text: String) throws -> String {
        let path = "/tmp/mizarctl-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).yaml"
        try writeText(path, text)
        return path
    }

    /// Every key under this test's root.
    func keys() async throws -> [String: [UInt8]] {
        try await withEtcd(host: "127.0.0.1", port: etcd.clientPort, tls: etcd.adminTLS) { e in
            let (kvs, _) = try await e.list(prefix: root)
            return Dictionary(uniqueKeysWithValues: kvs.map { ($0.key, $0.value) })
        }
    }
}

func writeText(_ path: String, _ text: String) throws {
    guard let f = fopen(path, "w") else { throw TestbedError("cannot write \(path)") }
    fputs(text, f)
    fclose(f)
}

let tenantYAML = """
    apiVersion: mizar.com/v1
    kind: Vpc
    metadata: {name: tenant-a}
    spec: {cidr: 10.0.0.0/16}
    ---
    apiVersion: mizar.com/v1
    kind: Subnet
    metadata: {name: a-front}
    spec: {vpc: tenant-a, cidr: 10.0.1.0/24}
    ---
    apiVersion: mizar.com/v1
    kind: Endpoint
    metadata: {name: web}
    spec: {vpc: tenant-a, subnet: a-front, ip: 10.0.1.10}

    """

@Suite("mizarctl apply, get, delete")
struct CLITests {
    @Test("apply creates, then reports unchanged and configured; get prints the table")
    func applyAndGet() async throws {
        let cli = try await CLI("apply")
        let path = try cli.file(tenantYAML)
        defer { unlink(path) }
        let first = await cli.run(["apply", "-f", path])
        #expect(first.status == 0)
        #expect(first.output == "vpc/tenant-a created\nsubnet/a-front created\nendpoint/web created\n")
        #expect(await cli.run(["apply", "-f", path]).output == "vpc/tenant-a unchanged\nsubnet/a-front unchanged\nendpoint/web unchanged\n")
        let more = try cli.file(tenantYAML.replacingOccurrences(of: "spec: {vpc: tenant-a, cidr: 10.0.1.0/24}", with: "spec: {vpc: tenant-a, cidr: 10.0.1.0/24, bouncers: 2}"))
        defer { unlink(more) }
        #expect(await cli.run(["apply", "-f", more]).output == "vpc/tenant-a unchanged\nsubnet/a-front configured\nendpoint/web unchanged\n")
        #expect(await cli.run(["get", "subnets"]).output == """
            NAME     PHASE  VPC       CIDR         BOUNCERS
            a-front  Init   tenant-a  10.0.1.0/24  -

            """)
        #expect(await cli.run(["get", "endpoint", "web", "-o", "wide"]).output == """
            NAMESPACE  NAME  PHASE  VPC       SUBNET   IP         DROPLET  DELAY  REASON
            default    web   Init   tenant-a  a-front  10.0.1.10  -        -      

            """)
        let yaml = await cli.run(["get", "vpc", "tenant-a", "-o", "yaml"]).output
        #expect(yaml.hasPrefix("apiVersion: mizar.com/v1\nkind: Vpc\nmetadata:\n  name: tenant-a\n"), "\(yaml)")
        let missing = await cli.run(["get", "vpc", "nope"])
        #expect(missing.status != 0 && missing.output.contains("Vpc nope not found"))
    }

    @Test("network policies: a Kubernetes one is applied per namespace, listed, described with what it selects, and deleted")
    func networkPolicies() async throws {
        let cli = try await CLI("netpol")
        let policy = """
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: deny, namespace: NS}
            spec:
              podSelector: {matchLabels: {pod: a}}
              policyTypes: [Ingress]

            """
        let objects = try cli.file(tenantYAML.replacingOccurrences(of: "metadata: {name: web}", with: "metadata: {name: web, namespace: x, labels: {pod: a}}") + """
            ---
            apiVersion: mizar.com/v1
            kind: Namespace
            metadata: {name: x, labels: {env: prod}}
            ---
            \(policy.replacingOccurrences(of: "NS", with: "x"))---
            \(policy.replacingOccurrences(of: "NS", with: "y"))
            """)
        defer { unlink(objects) }
        let applied = await cli.run(["apply", "-f", objects])
        #expect(applied.output.hasSuffix("namespace/x created\nnetworkpolicy/x/deny created\nnetworkpolicy/y/deny created\n"), "\(applied.output)")
        #expect(await cli.run(["apply", "-f", objects]).output.hasSuffix("namespace/x unchanged\nnetworkpolicy/x/deny unchanged\nnetworkpolicy/y/deny unchanged\n"))
        #expect(await cli.run(["get", "netpol"]).output == """
            NAMESPACE  NAME  PHASE  POD-SELECTOR  TYPES
            x          deny  Init   pod=a         Ingress
            y          deny  Init   pod=a         Ingress

            """)
        #expect(await cli.run(["get", "networkpolicies", "-n", "y"]).output.components(separatedBy: "\n").count == 3)
        #expect(await cli.run(["get", "namespaces"]).output.contains("kubernetes.io/metadata.name=x"))
        let policyText = await cli.run(["describe", "networkpolicy", "deny", "-n", "x"]).output
        #expect(policyText.contains("selects: web\n"), "\(policyText)")
        #expect(await cli.run(["describe", "networkpolicy", "deny", "-n", "y"]).output.contains("selects: (no endpoint)"))
        let endpointText = await cli.run(["describe", "endpoint", "web"]).output
        #expect(endpointText.contains("policies:\n  x/deny (Ingress)\n"), "\(endpointText)")
        #expect(await cli.run(["delete", "netpol", "deny", "-n", "y"]).output == "networkpolicy/y/deny deleted\n")
        #expect(await cli.run(["get", "netpol", "deny", "-n", "y"]).status != 0)
        #expect(await cli.run(["get", "netpol", "deny", "-n", "x"]).status == 0)
    }

    @Test("wait: a kind with none of its objects is not all provisioned; --count is checked; a missing object is deleted")
    func waitCounts() async throws {
        let cli = try await CLI("wait")
        let none = await cli.run(["wait", "--for", "provisioned", "endpoints", "--timeout", "0.5"])
        #expect(none.status != 0 && none.output.contains("timed out") && none.output.contains("nothing listed"), "\(none.output)")
        let zero = await cli.run(["wait", "--for", "ready", "droplets", "--count", "0"])
        #expect(zero.status != 0 && zero.output.contains("--count: 0 is not a positive number of objects"), "\(zero.output)")
        let path = try cli.file(tenantYAML)
        defer { unlink(path) }
        #expect(await cli.run(["apply", "-f", path]).status == 0)
        // One Vpc exists, Init: neither "provisioned" nor two of them.
        #expect(await cli.run(["wait", "--for", "provisioned", "vpcs", "--timeout", "0.5"]).status != 0)
        let gone = await cli.run(["wait", "--for", "deleted", "vpc", "nope", "--timeout", "0.5"])
        #expect(gone.status == 0 && gone.output == "vpcs/nope: deleted\n", "\(gone.output)")
    }

    @Test("bad files are refused naming the document, the field and the reason, and nothing is written", arguments: [
        ("apiVersion: mizar.com/v1\nkind: Subnet\nmetadata: {name: x}\nspec: {vpc: tenant-a}\n",
         "document 1: spec.cidr: required"),
        ("apiVersion: mizar.com/v1\nkind: Subnet\nmetadata: {name: x}\nspec: {vpc: tenant-a, cidr: 10.0.1.128/25}\n",
         "subnet/x: spec.cidr: 10.0.1.128/25 overlaps Subnet a-front (10.0.1.0/24) in Vpc tenant-a"),
        ("apiVersion: mizar.com/v1\nkind: Subnet\nmetadata: {name: x}\nspec: {vpc: tenant-a, cidr: 10.1.0.0/24}\n",
         "subnet/x: spec.cidr: 10.1.0.0/24 is outside Vpc tenant-a's 10.0.0.0/16"),
        ("apiVersion: mizar.com/v1\nkind: Subnet\nmetadata: {name: x}\nspec: {vpc: nope, cidr: 10.0.9.0/24}\n",
         "subnet/x: spec.vpc: no Vpc named \"nope\""),
        ("apiVersion: mizar.com/v1\nkind: Endpoint\nmetadata: {name: x}\nspec: {vpc: tenant-a, subnet: a-front, ip: 10.0.2.9}\n",
         "endpoint/x: spec.ip: 10.0.2.9 is outside Subnet a-front's 10.0.1.0/24"),
        ("apiVersion: mizar.com/v1\nkind: Endpoint\nmetadata: {name: x}\nspec: {vpc: tenant-a, subnet: a-front, ip: 10.0.1.10}\n",
         "endpoint/x: spec.ip: 10.0.1.10 is already taken in Vpc tenant-a by Endpoint web"),
        ("apiVersion: mizar.com/v1\nkind: Endpoint\nmetadata: {name: x}\nspec: {vpc: tenant-a, subnet: nope}\n",
         "endpoint/x: spec.subnet: no Subnet named \"nope\""),
        ("apiVersion: mizar.com/v1\nkind: Vpc\nmetadata: {name: Bad_Name}\nspec: {cidr: 10.0.0.0/16}\n",
         "document 1 (Vpc Bad_Name): metadata.name: \"Bad_Name\" is not a DNS label"),
        ("apiVersion: mizar.com/v1\nkind: Vpc\nmetadata: {name: ok}\nspec: {cidr: 10.0.0.0/33}\n",
         "document 1 (Vpc ok): spec.cidr:"),
        ("kind: [unclosed\n", "not valid YAML"),
    ])
    func refused(_ document: String, _ expected: String) async throws {
        let cli = try await CLI("refused-\(UInt32.random(in: 0...UInt32.max))")
        let good = try cli.file(tenantYAML)
        defer { unlink(good) }
        #expect(await cli.run(["apply", "-f", good]).status == 0)
        let before = try await cli.keys()
        let r = await cli.run(["apply", "-f", "-"], stdin: document)
        #expect(r.status != 0)
        #expect(r.output.contains(expected), "got: \(r.output)")
        #expect(try await cli.keys() == before, "a refused apply changed etcd")
    }

    @Test("delete -f removes what the file declared, in reverse order")
    func delete() async throws {
        let cli = try await CLI("delete")
        let path = try cli.file(tenantYAML)
        defer { unlink(path) }
        #expect(await cli.run(["apply", "-f", path]).status == 0)
        #expect(await cli.run(["delete", "-f", path]).output == "endpoint/web deleted\nsubnet/a-front deleted\nvpc/tenant-a deleted\n")
        #expect(await cli.run(["delete", "vpc", "tenant-a"]).output == "vpc/tenant-a not found\n")
        let left = try await cli.keys().keys.sorted()
        #expect(left.isEmpty, "keys left: \(left)")
    }
}
