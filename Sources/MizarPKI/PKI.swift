// Mizar's certificate authority: one CA, and a certificate for every party
// that speaks TLS (the operator, an administrator, each droplet's transitd,
// each etcd member). Keys are P-256; certificates are X.509 v3.
import Crypto
import Foundation
import Glibc
import MizarAPI
import MizarCore
import SwiftASN1
import X509

/// Who a certificate is for, and what it may do.
public struct Identity: Sendable, Equatable {
    public enum Role: String, Sendable, CaseIterable {
        /// Calls transitds and etcd (client only).
        case `operator`
        /// mizarctl against etcd: etcd's root user (client only).
        case admin
        /// A metrics scraper (Prometheus) reading daemons' metrics over
        /// mutual TLS (client only; no etcd user, no transitd access).
        case metrics
        /// A host's transitd: serves its API, and is a client of etcd.
        case droplet
        /// An etcd member: serves clients and peers, and dials its peers.
        case etcdMember = "etcd"
    }

    public let role: Role
    /// The file name stem: "operator", "droplet-h1", "etcd-e1".
    public let fileStem: String
    /// The subject's common name, which etcd takes as the user name.
    public let commonName: String
    public let ipAddresses: [IPv4Address]
    public let dnsNames: [String]

    /// Every party is a TLS client; droplets and etcd members serve too.
    public var serverAuth: Bool { role == .droplet || role == .etcdMember }

    /// The operator: CN mizar-operator.
    public static let `operator` = Identity(role: .operator, fileStem: "operator", commonName: Identities.operatorName, ipAddresses: [], dnsNames: [])
    /// The administrator: CN root, etcd's root user.
    public static let admin = Identity(role: .admin, fileStem: "admin", commonName: Identities.adminName, ipAddresses: [], dnsNames: [])
    /// The metrics reader: CN mizar-metrics.
    public static let metrics = Identity(role: .metrics, fileStem: "metrics", commonName: Identities.metricsName, ipAddresses: [], dnsNames: [])

    /// A droplet's transitd: CN droplet-NAME, its underlay IP as the subject
    /// alternative name (a client dials it by that address).
    public static func droplet(_ name: String, ip: IPv4Address) throws(ValidationError) -> Identity {
        try MizarAPI.validateName(name, field: "droplet")
        return Identity(role: .droplet, fileStem: "droplet-\(name)", commonName: Identities.droplet(name), ipAddresses: [ip], dnsNames: [])
    }

    /// An etcd member: CN etcd-NAME; its address, loopback and localhost as
    /// alternative names. Both usages: etcd dials itself and its peers with
    /// the same certificate.
    public static func etcdMember(_ name: String, ip: IPv4Address) throws(ValidationError) -> Identity {
        try MizarAPI.validateName(name, field: "etcd member")
        let loopback = IPv4Address(value: 0x7f00_0001)
        return Identity(role: .etcdMember, fileStem: "etcd-\(name)", commonName: "etcd-\(name)",
                        ipAddresses: ip == loopback ? [ip] : [ip, loopback], dnsNames: ["localhost"])
    }

    /// "NAME=IP", as the command line gives a droplet or an etcd member.
    public static func parse(_ text: String, role: Role, field: String) throws(ValidationError) -> Identity {
        let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { throw ValidationError(field: field, reason: "\(ValidationError.quote(text)) is not NAME=IP") }
        let ip = try IPv4Address(parsing: parts[1], field: field)
        switch role {
        case .droplet: return try droplet(parts[0], ip: ip)
        case .etcdMember: return try etcdMember(parts[0], ip: ip)
        case .operator: return .operator
        case .admin: return .admin
        case .metrics: return .metrics
        }
    }
}

/// A failure to read, make or write the PKI's files.
public struct PKIError: Error, CustomStringConvertible {
    public let description: String
}

/// The PKI in one directory (mode 0700): ca.crt and ca.key, and STEM.crt
/// and STEM.key per identity. Keys are 0600, certificates 0644. Nothing
/// is ever overwritten: what exists is kept, what is missing is made.
public struct PKI: Sendable {
    public let directory: String
    /// How long a certificate the CA signs is valid.
    public var leafLifetime: TimeInterval = 365 * 86400
    public var caLifetime: TimeInterval = 10 * 365 * 86400

    public init(directory: String) {
        self.directory = directory
    }

    public var caCertificatePath: String { "\(directory)/ca.crt" }
    public func certificatePath(_ id: Identity) -> String { "\(directory)/\(id.fileStem).crt" }
    public func keyPath(_ id: Identity) -> String { "\(directory)/\(id.fileStem).key" }

    /// Makes the directory, the CA and every identity that is missing.
    /// Returns the files it wrote.
    @discardableResult
    public func ensure(_ identities: [Identity]) throws -> [String] {
        try makePrivateDirectory()
        var written: [String] = []
        let (caCert, caKey) = try loadOrMakeCA(&written)
        for id in identities where !FileManager.default.fileExists(atPath: certificatePath(id)) {
            let key = P256.Signing.PrivateKey()
            let cert = try sign(id, publicKey: .init(key.publicKey), caCert: caCert, caKey: caKey)
            try writeNew(keyPath(id), key.pemRepresentation, mode: 0o600)
            try writeNew(certificatePath(id), try cert.serializeAsPEM().pemString, mode: 0o644)
            written += [keyPath(id), certificatePath(id)]
        }
        return written
    }

    /// Signs a certificate request made on a host, so that its key never
    /// leaves it. The certificate gets the request's key and `id`'s names
    /// and uses, never what the request asks for. The CA must exist already.
    /// Returns the certificate as PEM.
    public func sign(request pem: String, for id: Identity) throws -> String {
        guard FileManager.default.fileExists(atPath: caCertificatePath) else {
            throw PKIError(description: "\(directory): no CA here (ca.crt); make it first with mizarctl pki --dir \(directory)")
        }
        let csr: CertificateSigningRequest
        do { csr = try CertificateSigningRequest(pemEncoded: pem) } catch {
            throw PKIError(description: "the request is not a PEM certificate signing request: \(error)")
        }
        guard csr.publicKey.isValidSignature(csr.signature, for: csr) else {
            throw PKIError(description: "the request's signature does not verify with its own key: refused")
        }
        var written: [String] = []
        let (caCert, caKey) = try loadOrMakeCA(&written)
        return try sign(id, publicKey: csr.publicKey, caCert: caCert, caKey: caKey).serializeAsPEM().pemString
    }

    // MARK: Inside

    private func makePrivateDirectory() throws {
        if mkdir(directory, 0o700) != 0 {
            guard errno == EEXIST else { throw PKIError(description: "\(directory): cannot make the directory: \(String(cString: strerror(errno)))") }
            var st = stat()
            guard stat(directory, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else { throw PKIError(description: "\(directory) is not a directory") }
            guard st.st_mode & 0o077 == 0 else {
                throw PKIError(description: "\(directory) is mode \(String(st.st_mode & 0o777, radix: 8)); it holds private keys and must be 0700")
            }
        }
    }

    private func loadOrMakeCA(_ written: inout [String]) throws -> (Certificate, P256.Signing.PrivateKey) {
        let keyFile = "\(directory)/ca.key"
        if FileManager.default.fileExists(atPath: caCertificatePath) {
            do {
                let cert = try Certificate(pemEncoded: try String(contentsOfFile: caCertificatePath, encoding: .utf8))
                let key = try P256.Signing.PrivateKey(pemRepresentation: try String(contentsOfFile: keyFile, encoding: .utf8))
                guard cert.publicKey == Certificate.PublicKey(key.publicKey) else {
                    throw PKIError(description: "\(keyFile) is not the key of \(caCertificatePath)")
                }
                return (cert, key)
            } catch let e as PKIError {
                throw e
            } catch {
                throw PKIError(description: "\(directory): cannot read the CA: \(error)")
            }
        }
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName {
            OrganizationName("Mizar")
            CommonName("Mizar CA")
        }
        let now = Date()
        let cert = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(key.publicKey),
            notValidBefore: now - 300, notValidAfter: now + caLifetime, issuer: name, subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: .init(key.publicKey))
            },
            issuerPrivateKey: .init(key))
        try writeNew(keyFile, key.pemRepresentation, mode: 0o600)
        try writeNew(caCertificatePath, try cert.serializeAsPEM().pemString, mode: 0o644)
        written += [keyFile, caCertificatePath]
        return (cert, key)
    }

    private func sign(_ id: Identity, publicKey: Certificate.PublicKey, caCert: Certificate, caKey: P256.Signing.PrivateKey) throws -> Certificate {
        let subject = try DistinguishedName {
            OrganizationName("Mizar")
            CommonName(id.commonName)
        }
        let usages: [ExtendedKeyUsage.Usage] = id.serverAuth ? [.serverAuth, .clientAuth] : [.clientAuth]
        let names = id.ipAddresses.map { GeneralName.ipAddress(ASN1OctetString(contentBytes: ArraySlice($0.bytes))) }
            + id.dnsNames.map { GeneralName.dnsName($0) }
        let caKeyID = try caCert.extensions.subjectKeyIdentifier?.keyIdentifier
        let now = Date()
        return try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: publicKey,
            notValidBefore: now - 300, notValidAfter: now + leafLifetime, issuer: caCert.subject, subject: subject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage(usages)
                SubjectKeyIdentifier(hash: publicKey)
                if let caKeyID { AuthorityKeyIdentifier(keyIdentifier: caKeyID) }
                if !names.isEmpty { SubjectAlternativeNames(names) }
            },
            issuerPrivateKey: .init(caKey))
    }

    /// Creates `path` with `mode` (never over an existing file) and writes
    /// `text`: a key is never readable by others, not even for a moment.
    private func writeNew(_ path: String, _ text: String, mode: mode_t) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw PKIError(description: "\(path): cannot create: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
            guard n > 0 else { throw PKIError(description: "\(path): cannot write: \(String(cString: strerror(errno)))") }
            done += n
        }
        guard fsync(fd) == 0 else { throw PKIError(description: "\(path): cannot sync: \(String(cString: strerror(errno)))") }
    }
}
