"""The address the ranks of a multi-node job meet at: the first node's name when it resolves, else the
``NodeAddr`` SLURM itself records for that node (``scontrol show node <name>``), so a job does not
depend on the cluster's /etc/hosts or DNS knowing SLURM's node names."""

import re
import socket
import subprocess
from typing import Optional

from vise_plugin.errors import UserError


def resolves(host: str) -> bool:
    """Whether ``host`` (a name or an address) resolves to an address here."""
    try:
        socket.getaddrinfo(host, None)
        return True
    except (socket.gaierror, UnicodeError):
        return False


def slurm_node_address(node: str) -> Optional[str]:
    """``NodeAddr`` of ``node`` as ``scontrol`` reports it, or None without SLURM or such a node."""
    try:
        out = subprocess.run(
            ["scontrol", "show", "node", "-o", node], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"\bNodeAddr=(\S+)", out)
    return match.group(1) if match and match.group(1) not in ("", "(null)") else None


def master_address(node: str) -> str:
    """An address of ``node`` (the job's first node) that the other nodes can connect to: the name itself
    when it resolves, else SLURM's ``NodeAddr`` for it.

    Raises:
        UserError: neither gives an address (one line naming the node).
    """
    if resolves(node):
        return node
    address = slurm_node_address(node)
    if address and resolves(address):
        return address
    raise UserError(
        f"no address for node {node} (the job's first node): its name does not resolve here and "
        f"`scontrol show node {node}` gives "
        + (f"NodeAddr={address}, which does not resolve either" if address else "no NodeAddr")
    )
