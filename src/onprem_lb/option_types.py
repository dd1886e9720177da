"""The types of the `onprem-lb` options: each says what is wrong with a value (argparse prints
"argument --flag: <that>" and exits 2), so no option reaches a daemon unchecked."""

from __future__ import annotations

import argparse
import math

from onprem_lb import file_input, hostport, k8s_names


def host_port(text: str) -> tuple[str, int] | None:
    """HOST:PORT ([V6]:PORT for IPv6), or None for an empty value."""
    if text == "":
        return None
    try:
        return hostport.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def seconds(text: str) -> float:
    """A duration in seconds: more than 0, at most an hour."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0 and at most 3600 seconds")
    return value


def rounds(text: str) -> int:
    """A small count, 0 to 20."""
    if not text.strip().isascii() or not text.strip().isdigit() or int(text) > 20:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 0 to 20")
    return int(text)


def writes(text: str) -> int:
    """API writes in flight, 1 to 64."""
    if not text.strip().isascii() or not text.strip().isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to 64")
    return int(text)


def dns_label(text: str) -> str:
    problem = k8s_names.label_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def dns_subdomain(text: str) -> str:
    problem = k8s_names.subdomain_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def file_path(text: str) -> str:
    """A name a file could have (no NUL byte, not too long); whether it reads is told later.
    Empty: the option's default."""
    problem = file_input.path_problem(text) if text else None
    if problem:
        raise argparse.ArgumentTypeError(f"{file_input.shown(text)}: {problem}")
    return text


def dir_path(text: str) -> str:
    """A directory, or a name one could be created at."""
    problem = file_input.path_problem(text, directory=True)
    if problem:
        raise argparse.ArgumentTypeError(f"{file_input.shown(text)}: {problem}")
    return text


def node_name(text: str) -> str:
    return text if text == "" else dns_subdomain(text)


def printable(text: str) -> str:
    """Free text without spaces or control characters (an identity, a class name, a context)."""
    if not text.isprintable() or any(c.isspace() for c in text) or len(text) > 253:
        raise argparse.ArgumentTypeError(f"{text!r}: use printable characters without spaces (at most 253)")
    return text
