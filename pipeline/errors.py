"""Errors the harness reports to people, each with the exit code the CLI documents."""

from __future__ import annotations

EXIT_OK = 0
EXIT_GATES_FAILED = 1  # a gate failed or promotion was refused
EXIT_BAD_INPUT = 2  # bad data, config, command line or registry state


class PipelineError(Exception):
    """An error whose message is one line meant for a person, with an exit code."""

    exit_code = EXIT_GATES_FAILED

    MAX_CHARS = 1000  # a line a person reads: a huge value quoted in it (a YAML alias bomb) is cut

    def __init__(self, message: str):
        # One line, always: a multi-line message breaks JUnit summaries and log greps.
        line = " ".join(str(message).split())
        if len(line) > self.MAX_CHARS:
            line = f"{line[: self.MAX_CHARS]}... ({len(line) - self.MAX_CHARS:,} more characters)"
        super().__init__(line)


class InputError(PipelineError):
    """Bad data, config, command line or registry state: nothing was written."""

    exit_code = EXIT_BAD_INPUT


class RegistryUnavailable(PipelineError):
    """The tracking server or store could not be reached."""

    exit_code = EXIT_BAD_INPUT


class PermissionDenied(PipelineError):
    """The tracking server refused the user (401) or the call (403): nothing was changed by it."""

    exit_code = EXIT_BAD_INPUT


class PromotionRefused(PipelineError):
    """Promotion was asked for and refused; the reason names what was missing or wrong."""

    exit_code = EXIT_GATES_FAILED
