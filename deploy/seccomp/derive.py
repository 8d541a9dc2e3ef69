#!/usr/bin/env python3
"""Writes deploy/seccomp/corecast.json from containerd's default seccomp profile.

Reads containerd's contrib/seccomp/seccomp_default.go (the Go code that builds
RuntimeDefault) and prints, as OCI runtime-spec JSON, the profile containerd would
build for a container with no capabilities on amd64 or arm64 and a kernel >= 4.8,
plus one rule allowing io_uring_setup, io_uring_enter and io_uring_register.

    python3 deploy/seccomp/derive.py path/to/seccomp_default.go > deploy/seccomp/corecast.json

Then run deploy/validate.sh and deploy/seccomp/test-runc.sh. The Go file is parsed
with patterns, not compiled: if containerd reshapes it, this script stops with an
assertion rather than guess. The socket, personality and clone rules are written out
here (the Go code computes their values from constants); the script checks that the
Go file still has them.
"""

import json
import re
import sys

IO_URING = ["io_uring_enter", "io_uring_register", "io_uring_setup"]
AF_ALG, AF_VSOCK = 38, 40
# CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
# | CLONE_NEWCGROUP
CLONE_NAMESPACES = 0x00020000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x02000000
PERSONALITIES = [0x0, 0x0008, 0x20000, 0x20008, 0xFFFFFFFF]


def names_after(src, marker):
    """The string list of the first `Names: []string{...}` after marker."""
    start = src.index(marker)
    begin = src.index("Names: []string{", start)
    end = src.index("}", begin)
    return re.findall(r'"([^"]+)"', src[begin:end])


def rule(names, args=None, action="SCMP_ACT_ALLOW", errno=None):
    out = {"names": names, "action": action}
    if args:
        out["args"] = args
    if errno is not None:
        out["errnoRet"] = errno
    return out


def arg(index, value, op):
    return {"index": index, "value": value, "valueTwo": 0, "op": op}


def main():
    src = open(sys.argv[1]).read()
    base = names_after(src, "syscalls := []specs.LinuxSyscall{")
    ptrace = names_after(src, "KernelVersion{Kernel: 4, Major: 8}")
    amd64 = names_after(src, 'case "amd64":\n\t\ts.Syscalls')
    arm = names_after(src, 'case "arm", "arm64":')
    assert len(base) > 300 and not set(IO_URING) & set(base), "the base list changed shape"
    for needle in ("Value: unix.AF_ALG,", "Value: unix.AF_ALG + 1,", "Value: unix.AF_VSOCK,",
                   "unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER "
                   "| unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP",
                   '"clone3",', "ErrnoRet: &nosys"):
        assert needle in src, f"containerd's profile changed: {needle!r} is gone"
    personalities = [int(v, 16) for v in re.findall(
        r'Names:\s+\[\]string\{"personality"\}.*?Value:\s+(0x[0-9a-fA-F]+)', src, re.S)]
    assert personalities == PERSONALITIES, f"personality values changed: {personalities}"

    syscalls = [
        rule(sorted(base)),
        rule(["socket"], [arg(0, AF_ALG, "SCMP_CMP_LT")]),
        rule(["socket"], [arg(0, AF_ALG + 1, "SCMP_CMP_EQ")]),
        rule(["socket"], [arg(0, AF_VSOCK, "SCMP_CMP_GT")]),
    ]
    syscalls += [rule(["personality"], [arg(0, p, "SCMP_CMP_EQ")]) for p in PERSONALITIES]
    syscalls += [
        rule(sorted(ptrace)),
        rule(sorted(amd64)),
        rule(sorted(arm)),
        # Without CAP_SYS_ADMIN: clone without namespace flags; clone3 answers ENOSYS
        # (its flags are behind a pointer) so that libc falls back to clone.
        rule(["clone"], [arg(0, CLONE_NAMESPACES, "SCMP_CMP_MASKED_EQ")]),
        rule(["clone3"], action="SCMP_ACT_ERRNO", errno=38),
        # The one addition: glommio does all of its I/O through io_uring.
        rule(IO_URING),
    ]
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32",
                          "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "syscalls": syscalls,
    }
    print(json.dumps(profile, indent=2))


if __name__ == "__main__":
    main()
