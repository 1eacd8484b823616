internal import CLibBPF
import Glibc
import MizarCore

/// Attaching programs to interfaces. Both ways outlive the process (a tc
/// filter, or XDP set through netlink), so forwarding goes on while the
/// daemon restarts; attaching again replaces the program in one step.
public enum Attachment {
    /// XDP in the driver (native) or the generic fallback.
    public enum XDPMode: Sendable {
        case native, generic

        var flags: UInt32 { self == .native ? UInt32(MZ_XDP_NATIVE) : UInt32(MZ_XDP_GENERIC) }
    }

    /// Puts `program` on the interface's ingress with the program's hook.
    public static func attach(_ program: BPFProgram, ifindex: UInt32, xdpMode: XDPMode = .native) throws(SystemError) {
        let subject = "\(program.name) on ifindex \(ifindex)"
        switch program.hook {
        case .tc: try SystemError.check(mz_tc_attach_ingress(Int32(ifindex), program.fd), "bpf_tc_attach", subject)
        case .xdp: try SystemError.check(mz_xdp_attach(Int32(ifindex), program.fd, xdpMode.flags), "bpf_xdp_attach", subject)
        }
    }

    /// Removes what this hook has on the interface; false if nothing was there.
    @discardableResult
    public static func detach(hook: Hook, ifindex: UInt32, xdpMode: XDPMode = .native) throws(SystemError) -> Bool {
        switch hook {
        case .tc:
            let r = mz_tc_detach_ingress(Int32(ifindex))
            if r == -ENOENT || r == -EINVAL { return false }
            try SystemError.check(r, "bpf_tc_detach", "ifindex \(ifindex)")
            return true
        case .xdp:
            guard try attachedID(hook: .xdp, ifindex: ifindex, xdpMode: xdpMode) != nil else { return false }
            try SystemError.check(mz_xdp_detach(Int32(ifindex), xdpMode.flags), "bpf_xdp_detach", "ifindex \(ifindex)")
            return true
        }
    }

    /// The id of the program attached with this hook, or nil.
    public static func attachedID(hook: Hook, ifindex: UInt32, xdpMode: XDPMode = .native) throws(SystemError) -> UInt32? {
        var id: UInt32 = 0
        switch hook {
        case .tc:
            let r = mz_tc_query_ingress(Int32(ifindex), &id)
            if r == -ENOENT || r == -EINVAL { return nil }
            try SystemError.check(r, "bpf_tc_query", "ifindex \(ifindex)")
        case .xdp:
            try SystemError.check(mz_xdp_query(Int32(ifindex), xdpMode.flags, &id), "bpf_xdp_query_id", "ifindex \(ifindex)")
        }
        return id == 0 ? nil : id
    }
}

extension BPFProgram {
    /// The kernel's id for this program (what `bpftool prog` lists).
    public func id() throws(SystemError) -> UInt32 {
        var id: UInt32 = 0
        try SystemError.check(mz_prog_id(fd, &id), "bpf_obj_get_info_by_fd", name)
        return id
    }
}
