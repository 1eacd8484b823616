import ArgumentParser
import GRPCNIOTransportHTTP2Posix
import MizarCore

/// The PEM files one party presents and trusts: its certificate and key,
/// and the Mizar CA, the only root it trusts (never the system store). One
/// identity serves a process for everything it speaks: transitd serves its
/// TCP API and is etcd's client with its droplet's pair; the operator dials
/// transitds and etcd with its own.
public struct TLSFiles: Sendable, Hashable {
    public var certificate: String
    public var key: String
    public var ca: String

    public init(certificate: String, key: String, ca: String) {
        self.certificate = certificate
        self.key = key
        self.ca = ca
    }

    /// `STEM.crt`, `STEM.key` and `ca.crt` in a directory laid out by
    /// `mizarctl pki`.
    public init(pkiDirectory directory: String, stem: String) {
        self.init(certificate: "\(directory)/\(stem).crt", key: "\(directory)/\(stem).key", ca: "\(directory)/ca.crt")
    }

    /// The three flags of a command, all given or none.
    public static func flags(certificate: String?, key: String?, ca: String?, prefix: String = "--tls") throws(MizarCore.ValidationError) -> TLSFiles? {
        switch (certificate, key, ca) {
        case (nil, nil, nil): return nil
        case let (c?, k?, a?): return TLSFiles(certificate: c, key: k, ca: a)
        default: throw MizarCore.ValidationError(field: "\(prefix)-cert, \(prefix)-key, \(prefix)-ca", reason: "give all three or none")
        }
    }

    /// A client's transport security: mutual TLS, the server's certificate
    /// checked against the CA and against the address dialled.
    public var client: HTTP2ClientTransport.Posix.TransportSecurity {
        .mTLS(certificateChain: [.file(path: certificate, format: .pem)], privateKey: .file(path: key, format: .pem)) {
            $0.trustRoots = .certificates([.file(path: ca, format: .pem)])
        }
    }

    /// A server's transport security: mutual TLS, a client certificate
    /// required and checked against the CA.
    public var server: HTTP2ServerTransport.Posix.TransportSecurity {
        .mTLS(certificateChain: [.file(path: certificate, format: .pem)], privateKey: .file(path: key, format: .pem)) {
            $0.trustRoots = .certificates([.file(path: ca, format: .pem)])
            $0.clientCertificateVerification = .noHostnameVerification
        }
    }
}

/// The three flags that give a command its TLS files, all or none: for
/// transitd's TCP API (transitd serves with them, the operator and mizarctl
/// dial with them) and for etcd (every Mizar client of etcd presents them).
public struct TLSOptions: ParsableArguments, Sendable {
    @Option(help: "This party's certificate (PEM) from mizarctl pki: droplet-NAME.crt for transitd, operator.crt for the operator and mizarctl, admin.crt for mizarctl access. Its name is also the etcd user.")
    public var tlsCert: String?

    @Option(help: "Its private key (PEM).")
    public var tlsKey: String?

    @Option(help: "The Mizar CA (PEM): the only root trusted for the other end's certificate.")
    public var tlsCa: String?

    public init() {}

    public func validate() throws { _ = try files() }

    /// The files, or nil when none was given.
    public func files() throws(MizarCore.ValidationError) -> TLSFiles? {
        try TLSFiles.flags(certificate: tlsCert, key: tlsKey, ca: tlsCa)
    }
}
