import GRPCNIOTransportHTTP2Posix
import MizarTLS

extension TransitTarget {
    /// A unix socket is local (mode 0600, root's): plaintext. TCP is mutual
    /// TLS when `tls` is given, else plaintext (a transitd started with
    /// --insecure).
    func security(_ tls: TLSFiles?) -> HTTP2ClientTransport.Posix.TransportSecurity {
        switch (self, tls) {
        case (.tcp, let tls?): tls.client
        default: .plaintext
        }
    }
}
