"""Which filesystems count as a machine's disks: one policy for the agent's disks collector
and the hub's node_exporter mapper, so pushed and pulled nodes show the same disks.

A list close to node_exporter's default excludes: pseudo and container-layer filesystems,
and the mount points that only hold them.
"""

from __future__ import annotations

import re

IGNORED_FSTYPES = frozenset({
    "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts",
    "devtmpfs", "efivarfs", "erofs", "fusectl", "hugetlbfs", "iso9660", "mqueue", "nsfs",
    "overlay", "proc", "procfs", "pstore", "ramfs", "rpc_pipefs", "securityfs", "selinuxfs",
    "squashfs", "sysfs", "tmpfs", "tracefs", "fuse.lxcfs", "fuse.gvfsd-fuse", "fuse.portal",
    "fuse.snapfuse", "nfsd", "zram",
})
IGNORED_MOUNTPOINTS = re.compile(
    r"^/(dev|proc|sys|run/credentials/.+|run/containerd/.+|run/netns/.+|var/lib/docker/.+"
    r"|var/lib/containers/storage/.+|var/lib/kubelet/pods/.+|snap/.+)($|/)"
)
REMOTE_FSTYPES = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "lustre", "gpfs", "beegfs",
    "afs", "9p", "ncpfs", "davfs", "orangefs", "pvfs2",
})
