"""k2 chat on k2-tiny: driven through a pipe (/system, /reset, /save, multi-line input with a
trailing backslash and with triple quotes, prefix reuse between turns with the prompt times
printed), and through a pseudo-terminal where Ctrl-C stops an answer but not the program."""
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
from k2test import Checker, k2_bin, shared_dir  # noqa: E402

STATS = re.compile(r"\[(\d+) prompt tokens \((\d+) cached\): ([\d.]+) ms, [\d.]+ tok/s; (\d+) generated")


def main():
    ck = Checker("test_chat")
    model = os.path.join(shared_dir(), "fixtures", "models", "k2-tiny-f32.gguf")
    tmp = tempfile.mkdtemp(prefix="k2chat.")
    save = os.path.join(tmp, "conv.json")
    args = [k2_bin(), "chat", model, "--temp", "0", "-n", "6", "--ignore-eos", "-t", "1", "--cache", "f32"]

    # --- a pipe ---
    script = ("Tell me about Paris and the weather today, please.\n"
              "And Tokyo?\n"
              "first line\\\nsecond line\n"
              '"""\nblock one\nblock two\n"""\n'
              "/system Be brief.\n"
              "Hello\n"
              f"/save {save}\n"
              "/reset\n"
              "Hello\n"
              "/bogus\n")
    p = subprocess.run(args, input=script, capture_output=True, text=True, timeout=300)
    ck.check(p.returncode == 0, f"chat rc {p.returncode}: {p.stderr}")
    stats = [tuple(map(float, m.groups())) for m in STATS.finditer(p.stderr)]
    ck.check(len(stats) == 6, f"six answers: {p.stderr}")
    answers = p.stdout.splitlines()
    ck.check(len(answers) == 6, f"six answer lines: {p.stdout!r}")
    if len(stats) == 6:
        # turn 2 reuses turn 1's cache (prompt + answer), so evaluates far fewer tokens
        (p1, c1, ms1, _), (p2, c2, ms2, _) = stats[0], stats[1]
        ck.check(c1 == 0 and c2 >= p1, f"prefix reuse: turn 1 {p1}/{c1} cached, turn 2 {p2}/{c2} cached")
        print(f"prefix reuse: turn 1: {int(p1)} prompt tokens, {int(c1)} cached, {ms1:.1f} ms; "
              f"turn 2: {int(p2)} prompt tokens, {int(c2)} cached, {ms2:.1f} ms")
        # /system changes the start of the prompt: little is reused; /reset starts over
        ck.check(stats[4][1] < stats[3][1], f"new system message: {stats[3]} -> {stats[4]}")
        ck.check(stats[5][0] < stats[4][0], f"/reset shortens the prompt: {stats[4]} -> {stats[5]}")
    ck.check("[system message set]" in p.stderr and "[conversation reset]" in p.stderr, p.stderr)
    ck.check("unknown command /bogus" in p.stderr, p.stderr)
    try:
        conv = json.load(open(save))
        msgs = conv["messages"]
        ck.check(msgs[0] == {"role": "system", "content": "Be brief."}, f"saved system: {msgs[:1]}")
        users = [m["content"] for m in msgs if m["role"] == "user"]
        ck.check(users == ["Tell me about Paris and the weather today, please.", "And Tokyo?",
                           "first line\nsecond line", "block one\nblock two", "Hello"], f"saved users: {users}")
        ck.check(sum(m["role"] == "assistant" for m in msgs) == 5, f"saved assistants: {msgs}")
        ck.check([m["content"] for m in msgs if m["role"] == "assistant"][:5] == answers[:5], "saved answers")
    except (OSError, ValueError, KeyError, IndexError) as e:
        ck.check(False, f"/save: {e}")

    # the same conversation alone gives the same first answer (the chat template path)
    r = subprocess.run([k2_bin(), "run", model, "--temp", "0", "-n", "6", "--ignore-eos", "-t", "1", "--cache", "f32",
                        "-p", "Tell me about Paris and the weather today, please."], capture_output=True, text=True,
                       timeout=300)
    ck.check(r.returncode == 0 and answers and r.stdout.splitlines()[:1] == answers[:1],
             f"run vs chat: {r.stdout!r} vs {answers[:1]!r}")

    # a missing model fails cleanly
    e = subprocess.run([k2_bin(), "chat", "/nonexistent/model.gguf"], input="hi\n", capture_output=True, text=True,
                       timeout=60)
    ck.check(e.returncode == 1 and "/nonexistent/model.gguf" in e.stderr, f"missing model: {e.stderr}")

    # --- a terminal: Ctrl-C stops the answer, the chat goes on ---
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(k2_bin(), [k2_bin(), "chat", model, "--temp", "0.8", "--seed", "1", "--ignore-eos", "-t", "1",
                            "-n", "100000", "--ctx-size", "4096", "-q"])
    out = b""

    def read_until(pattern, timeout):
        nonlocal out
        end = time.time() + timeout
        while time.time() < end:
            if re.search(pattern, out):
                return True
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                try:
                    out += os.read(fd, 4096)
                except OSError:
                    break
        return bool(re.search(pattern, out))

    ok = read_until(rb">>> ", 60)
    ck.check(ok, f"prompt on a terminal: {out!r}")
    os.write(fd, b"Write a very long story.\r")
    mark = len(out)
    time.sleep(1.5)
    read_until(rb"$^", 0.2)
    ck.check(len(out) > mark + 20, f"answer streaming: {out[mark:]!r}")
    t0 = time.time()
    os.write(fd, b"\x03")
    ok = read_until(rb"\[interrupted\]", 20)
    ck.check(ok, f"Ctrl-C stops the answer: {out[-300:]!r}")
    ck.check(time.time() - t0 < 10, "stopped promptly")
    ok = read_until(rb"interrupted\][^>]*>>> ", 20)
    ck.check(ok, f"back at the prompt after Ctrl-C: {out[-300:]!r}")
    # Ctrl-C at the prompt discards the line, the program stays
    os.write(fd, b"half a line\x03")
    time.sleep(0.5)
    os.write(fd, b"/exit\r")
    status = None
    end = time.time() + 20
    while time.time() < end:
        wpid, st = os.waitpid(pid, os.WNOHANG)
        if wpid:
            status = st
            break
        read_until(rb"$^", 0.1)
    if status is None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    ck.check(status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0,
             f"/exit after Ctrl-C: status {status}: {out[-300:]!r}")
    os.close(fd)
    ck.report()


if __name__ == "__main__":
    main()
