"""The cage's seccomp filter (bwrap `--seccomp FD`): a classic BPF program refusing the
system calls a code node never needs and that widen the kernel's attack surface: new
namespaces (unshare, setns, clone with namespace flags: an unprivileged user namespace
would give the program root inside it), mounts, ptrace, bpf, userfaultfd, perf events,
keyrings, io_uring, kernel modules, and the x32 ABI. clone3 answers ENOSYS (its flags sit
in memory the filter cannot read), so the C library falls back to clone, which it checks.

Only x86_64 has its numbers here; elsewhere the cage runs without a filter (the namespaces,
the unprivileged user, the rlimits and the interpreters' own guards still hold)."""

from __future__ import annotations

import errno
import platform
import struct

_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000

# BPF opcodes (linux/filter.h) and seccomp return values (linux/seccomp.h)
_LD_W_ABS = 0x20
_JEQ_K, _JGE_K, _JSET_K = 0x15, 0x35, 0x45
_RET_K = 0x06
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000

# offsets in struct seccomp_data: nr, arch, then args[6] after the instruction pointer
_NR, _ARCH, _ARG0_LOW = 0, 4, 16

_CLONE_X86_64 = 56
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
_NAMESPACE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 \
    | 0x20000000 | 0x40000000

_REFUSED_X86_64 = {
    "unshare": 272, "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155,
    "chroot": 161, "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311,
    "bpf": 321, "userfaultfd": 323, "perf_event_open": 298, "keyctl": 250, "add_key": 248,
    "request_key": 249, "kexec_load": 246, "kexec_file_load": 320, "init_module": 175,
    "finit_module": 313, "delete_module": 176, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "open_by_handle_at": 304,
    "name_to_handle_at": 303, "syslog": 103, "acct": 163, "swapon": 167, "swapoff": 168,
    "reboot": 169, "quotactl": 179, "open_tree": 428, "move_mount": 429, "fsopen": 430,
    "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    "personality": 135, "lookup_dcookie": 212,
}
_NOT_IMPLEMENTED_X86_64 = {"clone3": 435}


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def filter_program() -> bytes | None:
    """The compiled filter for this machine's architecture, or None where there is none."""
    if platform.machine() != "x86_64":
        return None
    refuse = _RET_ERRNO | errno.EPERM
    missing = _RET_ERRNO | errno.ENOSYS
    program = [
        _op(_LD_W_ABS, _ARCH),
        _op(_JEQ_K, _AUDIT_ARCH_X86_64, jt=1),
        _op(_RET_K, _RET_KILL_PROCESS),  # another ABI (i386) entered from this process
        _op(_LD_W_ABS, _NR),
        _op(_JGE_K, _X32_SYSCALL_BIT, jf=1),
        _op(_RET_K, missing),
    ]
    for numbers, answer in ((_REFUSED_X86_64, refuse), (_NOT_IMPLEMENTED_X86_64, missing)):
        for number in numbers.values():
            program += [_op(_JEQ_K, number, jf=1), _op(_RET_K, answer)]
    program += [
        _op(_JEQ_K, _CLONE_X86_64, jf=3),
        _op(_LD_W_ABS, _ARG0_LOW),
        _op(_JSET_K, _NAMESPACE_FLAGS, jf=1),
        _op(_RET_K, refuse),
        _op(_RET_K, _RET_ALLOW),
    ]
    return b"".join(program)
