from __future__ import annotations

import pytest

from bluegreen.workloads import gitrepo
from bluegreen.workloads.gitrepo import Failure


@pytest.mark.parametrize(("output", "kind"), [
    ("Host key verification failed.\r\nfatal: Could not read from remote repository.", Failure.HOST_KEY),
    ("@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @\nfatal: Could not read from remote repository.",
     Failure.HOST_KEY),
    ("git@127.0.0.1: Permission denied (publickey).\r\nfatal: Could not read from remote repository.", Failure.AUTH),
    ("fatal: Authentication failed for 'https://git.example.com/env.git/'", Failure.AUTH),
    ("fatal: could not read Username for 'https://git.example.com': terminal prompts disabled", Failure.AUTH),
    ("fatal: unable to access 'https://h/env.git/': The requested URL returned error: 403", Failure.AUTH),
    ('Load key "/tmp/x/identity": invalid format\r\ngit@h: Permission denied (publickey).', Failure.BAD_KEY),
    ("remote: Repository not found.\nfatal: repository 'https://h/x.git/' not found", Failure.NOT_FOUND),
    ("fatal: '/srv/none.git' does not appear to be a git repository", Failure.NOT_FOUND),
    ("fatal: unable to access 'https://h/': Could not resolve host: h", Failure.UNREACHABLE),
    ("ssh: connect to host 10.0.0.1 port 22: Connection refused", Failure.UNREACHABLE),
    ("fatal: unable to access 'http://127.0.0.1:1/e.git/': Failed to connect to 127.0.0.1 port 1", Failure.UNREACHABLE),
    ("error: pathspec 'x' did not match any file(s) known to git", Failure.OTHER),
])
def test_failures_are_classified_from_git_s_words(output: str, kind: str) -> None:
    assert gitrepo.classify(output) == kind


@pytest.mark.parametrize(("url", "transport"), [
    ("ssh://git@github.com/org/env.git", "ssh"),
    ("git@github.com:org/env.git", "ssh"),
    ("https://github.com/org/env.git", "https"),
    ("HTTP://127.0.0.1:8080/env.git", "http"),
    ("file:///srv/env.git", "file"),
    ("git://git.example.com/env.git", "git"),
])
def test_transports(url: str, transport: str) -> None:
    assert gitrepo.scheme(url) == transport


def test_passwords_in_urls_are_hidden_and_usernames_kept() -> None:
    text = "fatal: unable to access 'https://flux:s3cr3t@git.example.com/env.git/' and ssh://git@h/x"

    assert gitrepo.display_url(text) == "fatal: unable to access 'https://flux:***@git.example.com/env.git/' and ssh://git@h/x"
    assert gitrepo.url_has_password("https://flux:s3cr3t@git.example.com/env.git")
    assert not gitrepo.url_has_password("ssh://git@git.example.com/env.git")


def test_scrub_removes_every_credential_value() -> None:
    key = b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\nAAAAC3NzaC1lZDI1NTE5\n" \
          b"-----END OPENSSH PRIVATE KEY-----\n"
    credentials = gitrepo.Credentials(identity=key, username="deploy-bot", password="p4ss-w0rd")
    text = "user deploy-bot with p4ss-w0rd and b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ in https://a:p4ss-w0rd@h/"

    scrubbed = gitrepo.scrub(text, credentials.secret_values())

    assert scrubbed == "user *** with *** and *** in https://a:***@h/"
    assert "p4ss" not in repr(credentials) and "deploy-bot" not in repr(credentials)
    assert repr(credentials) == "Credentials(<identity, username, password>)"


def test_a_short_username_is_not_scrubbed_from_ordinary_words() -> None:
    credentials = gitrepo.Credentials(username="git", password="token-123456")

    assert gitrepo.scrub("git push failed for token-123456", credentials.secret_values()) == "git push failed for ***"


@pytest.mark.parametrize(("revision", "commit"), [
    ("main@sha1:" + "a" * 40, "a" * 40),
    ("main/" + "b" * 40, "b" * 40),
    ("sha1:" + "c" * 40, "c" * 40),
    ("d" * 40, "d" * 40),
    ("main@sha256:" + "e" * 64, "e" * 64),
    ("main@sha1:abc", None),
    ("", None),
    (None, None),
])
def test_the_commit_of_a_flux_revision(revision: str | None, commit: str | None) -> None:
    assert gitrepo.revision_commit(revision) == commit


def test_summaries_keep_the_lines_that_say_what_failed() -> None:
    output = ("@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\n"
              "IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\r\nOffending ED25519 key in /tmp/k:1\r\n"
              "Host key verification failed.\r\nfatal: Could not read from remote repository.\n\n"
              "Please make sure you have the correct access rights\n")

    assert gitrepo.summarize(output) == ("WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!; Host key verification "
                                         "failed.; fatal: Could not read from remote repository.")
    assert len(gitrepo.summarize("fatal: " + "x" * 1000)) == 400
