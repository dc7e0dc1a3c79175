"""The system calls no sandboxed process may make: one deny list, rendered for both backends.

Everything else is allowed; capabilities are already dropped to the file-ownership set
(see :data:`CAPABILITIES`), so this filter is the second wall around what a process
with those few capabilities could still reach. What it denies, by purpose:

- changing the mount table or the namespaces (``mount``, ``umount2``, ``pivot_root``,
  the new mount API, ``unshare``, ``setns``, and ``clone`` with any ``CLONE_NEW*`` flag),
  so that no read-only bind can be remounted and no new user namespace gives back the
  capabilities that were dropped; ``clone3`` answers ``ENOSYS``, because its flags sit
  in memory a filter cannot read, and the C library then falls back to ``clone``;
- reaching into other processes (``ptrace``, ``process_vm_readv``/``writev``,
  ``pidfd_getfd``, ``kcmp``), so that a command cannot steer the harness's wrapper or
  read another process's memory;
- the kernel's wider attack surface (``bpf``, ``perf_event_open``, ``userfaultfd``,
  ``io_uring_*``, the key rings, ``open_by_handle_at``), and whatever acts on the whole
  machine (modules, ``kexec``, ``reboot``, clocks, swap, quotas, ``acct``, ``syslog``);
- typing into a terminal (``ioctl`` ``TIOCSTI``/``TIOCLINUX``);
- ``AF_VSOCK`` sockets, which no network namespace encloses (they reach the host or
  hypervisor of a virtual machine).

:func:`bpf_program` compiles the list to classic BPF for bubblewrap's ``--seccomp FD``
(a process of another ABI than the machine's, such as x32 or i386, is killed: its
system call numbers mean other calls); :func:`docker_profile` writes it as a Docker
seccomp profile, allowing the native architecture only.
"""

from __future__ import annotations

import errno
import functools
import json
import platform
import struct

# Capabilities a sandbox keeps: those a root user needs to own and change its own files
# (and signal its own processes). In bubblewrap they hold inside a user namespace whose
# only mapped user is the sandbox's, so they reach nothing outside it.
CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID")

DENIED = (
    "acct", "add_key", "bpf", "chroot", "clock_adjtime", "clock_settime", "delete_module",
    "fanotify_init", "finit_module", "fsconfig", "fsmount", "fsopen", "fspick",
    "init_module", "io_uring_enter", "io_uring_register", "io_uring_setup", "kcmp",
    "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mount", "mount_setattr",
    "move_mount", "name_to_handle_at", "open_by_handle_at", "open_tree", "perf_event_open",
    "pidfd_getfd", "pivot_root", "process_vm_readv", "process_vm_writev", "ptrace",
    "quotactl", "quotactl_fd", "reboot", "request_key", "setdomainname", "sethostname",
    "settimeofday", "adjtimex", "setns", "swapoff", "swapon", "syslog", "umount2",
    "unshare", "userfaultfd",
    # x86 only
    "iopl", "ioperm", "uselib", "_sysctl",
)  # fmt: skip
# Namespace flags of clone(2): CLONE_NEWTIME, NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER,
# NEWPID, NEWNET.
CLONE_NAMESPACES = 0x00000080 | 0x00020000 | 0x7C000000 | 0x02000000
TERMINAL_IOCTLS = (0x5412, 0x541C)  # TIOCSTI, TIOCLINUX
AF_VSOCK = 40

# System call numbers of the two architectures pivotgym runs on (from the kernel's
# unistd headers), and their audit architecture ids.
_NUMBERS = {
    "x86_64": {
        "acct": 163, "add_key": 248, "adjtimex": 159, "bpf": 321, "chroot": 161,
        "clock_adjtime": 305, "clock_settime": 227, "clone": 56, "clone3": 435, "socket": 41,
        "delete_module": 176, "fanotify_init": 300, "finit_module": 313, "fsconfig": 431,
        "fsmount": 432, "fsopen": 430, "fspick": 433, "init_module": 175,
        "io_uring_enter": 426, "io_uring_register": 427, "io_uring_setup": 425, "ioctl": 16,
        "ioperm": 173, "iopl": 172, "kcmp": 312, "kexec_file_load": 320, "kexec_load": 246,
        "keyctl": 250, "lookup_dcookie": 212, "mount": 165, "mount_setattr": 442,
        "move_mount": 429, "name_to_handle_at": 303, "open_by_handle_at": 304,
        "open_tree": 428, "perf_event_open": 298, "pidfd_getfd": 438, "pivot_root": 155,
        "process_vm_readv": 310, "process_vm_writev": 311, "ptrace": 101, "quotactl": 179,
        "quotactl_fd": 443, "reboot": 169, "request_key": 249, "setdomainname": 171,
        "sethostname": 170, "setns": 308, "settimeofday": 164, "swapoff": 168,
        "swapon": 167, "syslog": 103, "umount2": 166, "unshare": 272, "uselib": 134,
        "userfaultfd": 323, "_sysctl": 156,
    },
    "aarch64": {
        "acct": 89, "add_key": 217, "adjtimex": 171, "bpf": 280, "chroot": 51,
        "clock_adjtime": 266, "clock_settime": 112, "clone": 220, "clone3": 435, "socket": 198,
        "delete_module": 106, "fanotify_init": 262, "finit_module": 273, "fsconfig": 431,
        "fsmount": 432, "fsopen": 430, "fspick": 433, "init_module": 105,
        "io_uring_enter": 426, "io_uring_register": 427, "io_uring_setup": 425, "ioctl": 29,
        "kcmp": 272, "kexec_file_load": 294, "kexec_load": 104, "keyctl": 219,
        "lookup_dcookie": 18, "mount": 40, "mount_setattr": 442, "move_mount": 429,
        "name_to_handle_at": 264, "open_by_handle_at": 265, "open_tree": 428,
        "perf_event_open": 241, "pidfd_getfd": 438, "pivot_root": 41,
        "process_vm_readv": 270, "process_vm_writev": 271, "ptrace": 117, "quotactl": 60,
        "quotactl_fd": 443, "reboot": 142, "request_key": 218, "setdomainname": 162,
        "sethostname": 161, "setns": 268, "settimeofday": 170, "swapoff": 225,
        "swapon": 224, "syslog": 116, "umount2": 39, "unshare": 97, "userfaultfd": 282,
    },
}  # fmt: skip
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_DOCKER_ARCH = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}
_X32_BIT = 0x40000000

# Classic BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h).
_LD_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET = 0x06  # BPF_RET | BPF_K
_ALLOW = 0x7FFF0000
_KILL_PROCESS = 0x80000000
_ERRNO = 0x00050000
# Offsets in struct seccomp_data: nr, arch, then the arguments, 8 bytes each (the low
# half first on these little-endian machines).
_NR, _ARCH, _ARG0, _ARG1 = 0, 4, 16, 24


class UnsupportedArchitecture(RuntimeError):
    """No system call table for this machine: sandboxes would run unfiltered."""


def _machine(machine: str | None) -> str:
    machine = machine or platform.machine()
    if machine not in _NUMBERS:
        raise UnsupportedArchitecture(
            f"no seccomp table for {machine!r} (supported: {', '.join(_NUMBERS)})"
        )
    return machine


@functools.cache
def bpf_program(machine: str | None = None) -> bytes:
    """The filter as an array of ``struct sock_filter``, as ``bwrap --seccomp`` reads it."""
    machine = _machine(machine)
    numbers = _NUMBERS[machine]
    prog: list[tuple[int, int, int, int]] = []

    def op(code: int, k: int, jt: int = 0, jf: int = 0) -> None:
        prog.append((code, jt, jf, k))

    op(_LD_ABS, _ARCH)
    op(_JEQ, _AUDIT_ARCH[machine], jt=1)
    op(_RET, _KILL_PROCESS)
    op(_LD_ABS, _NR)
    if machine == "x86_64":
        op(_JGE, _X32_BIT, jf=1)
        op(_RET, _KILL_PROCESS)
    for name in DENIED:
        if name in numbers:
            op(_JEQ, numbers[name], jf=1)
            op(_RET, _ERRNO | errno.EPERM)
    op(_JEQ, numbers["clone3"], jf=1)
    op(_RET, _ERRNO | errno.ENOSYS)
    # clone: denied when it asks for a new namespace, allowed otherwise.
    op(_JEQ, numbers["clone"], jf=4)
    op(_LD_ABS, _ARG0)
    op(_JSET, CLONE_NAMESPACES, jf=1)
    op(_RET, _ERRNO | errno.EPERM)
    op(_RET, _ALLOW)
    # ioctl: denied for the requests that push input into a terminal.
    op(_JEQ, numbers["ioctl"], jf=2 + 2 * len(TERMINAL_IOCTLS))
    op(_LD_ABS, _ARG1)
    for request in TERMINAL_IOCTLS:
        op(_JEQ, request, jf=1)
        op(_RET, _ERRNO | errno.EPERM)
    op(_RET, _ALLOW)
    # socket: denied for the address family no namespace encloses.
    op(_JEQ, numbers["socket"], jf=4)
    op(_LD_ABS, _ARG0)
    op(_JEQ, AF_VSOCK, jf=1)
    op(_RET, _ERRNO | errno.EPERM)
    op(_RET, _ALLOW)
    op(_RET, _ALLOW)
    return b"".join(struct.pack("=HBBI", *ins) for ins in prog)


@functools.cache
def docker_profile(machine: str | None = None) -> str:
    """The filter as a Docker seccomp profile (the JSON ``--security-opt seccomp=`` takes)."""
    machine = _machine(machine)
    numbers = _NUMBERS[machine]
    eperm = {"action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM}
    rules: list[dict[str, object]] = [
        {"names": [n for n in DENIED if n in numbers], **eperm},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
    ]
    # Docker's rules compare masked arguments for equality: one rule per namespace bit.
    for bit in range(32):
        flag = 1 << bit
        if CLONE_NAMESPACES & flag:
            arg = {"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}
            rules.append({"names": ["clone"], "args": [arg], **eperm})
    for request in TERMINAL_IOCTLS:
        arg = {"index": 1, "value": request, "op": "SCMP_CMP_EQ"}
        rules.append({"names": ["ioctl"], "args": [arg], **eperm})
    vsock = {"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_EQ"}
    rules.append({"names": ["socket"], "args": [vsock], **eperm})
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": [_DOCKER_ARCH[machine]],
        "syscalls": rules,
    }
    return json.dumps(profile, sort_keys=True)
