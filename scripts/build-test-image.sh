#!/usr/bin/env bash
# Builds a tiny OCI image tarball (OCI layout in a tar, as `skopeo copy oci-archive:` reads)
# holding Debian's static busybox, without docker: one gzip layer, Cmd ["sh"].
#
#   scripts/build-test-image.sh OUT.tar [IMAGE_NAME]     (default docker.io/library/busybox:test)
#
# PAD_BYTES=N adds a file /pad of N pseudo-random (incompressible, but reproducible)
# bytes: a distinct, bigger image (the image GC tests).
# IMAGE_USER=NAME sets the image config's User. ADD_USER=NAME adds a second layer whose
# /etc/passwd and /etc/group (replacing the first layer's) also hold user NAME (uid and
# gid 1234) and group `staff` (gid 50) listing NAME (the security-context tests).
#
# Needs busybox-static and python3 (scripts/install-deps.sh).
set -euo pipefail

OUT=${1:?usage: $0 OUT.tar [IMAGE_NAME]}
NAME=${2:-docker.io/library/busybox:test}
BUSYBOX=${BUSYBOX:-/bin/busybox}

if ! [ -x "$BUSYBOX" ] || ldd "$BUSYBOX" >/dev/null 2>&1; then
  echo "$BUSYBOX is missing or not static: install busybox-static (scripts/install-deps.sh)" >&2
  exit 1
fi
ARCH=$(dpkg --print-architecture 2>/dev/null || uname -m)
case "$ARCH" in x86_64) ARCH=amd64 ;; aarch64) ARCH=arm64 ;; armhf|armv7l) ARCH=arm ;; esac

python3 - "$OUT" "$NAME" "$BUSYBOX" "$ARCH" "${PAD_BYTES:-0}" "${IMAGE_USER:-}" "${ADD_USER:-}" <<'PY'
import gzip, hashlib, io, json, random, sys, tarfile

out, name, busybox, arch = sys.argv[1:5]
pad_bytes = int(sys.argv[5])
image_user, add_user = sys.argv[6], sys.argv[7]
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
GROUP = b"root:x:0:\nnogroup:x:65534:\n"
APPLETS = ["sh", "ash", "sleep", "httpd", "wget", "cat", "echo", "hostname", "nc", "ls",
           "ps", "env", "true", "false", "head", "tail", "grep", "sed", "id", "kill",
           "mkdir", "rm", "cp", "mv", "touch", "dd", "date", "uname", "test", "[",
           "printf", "wc", "sort", "nslookup", "ip", "ifconfig", "mount", "df", "top",
           "yes", "seq", "timeout", "watch", "tr", "cut", "xargs", "find", "vi", "du", "tar"]

def add(tf, info, data=None):
    info.mtime = 0
    info.uname = info.gname = ""
    tf.addfile(info, io.BytesIO(data) if data is not None else None)

def directory(tf, path, mode=0o755):
    ti = tarfile.TarInfo(path)
    ti.type = tarfile.DIRTYPE
    ti.mode = mode
    add(tf, ti)

def regular(tf, path, data, mode=0o644):
    ti = tarfile.TarInfo(path)
    ti.size = len(data)
    ti.mode = mode
    add(tf, ti, data)

layer = io.BytesIO()
with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tf:
    for d in ["bin", "dev", "etc", "proc", "sys", "root", "var", "var/www", "usr", "usr/bin"]:
        directory(tf, d)
    directory(tf, "tmp", 0o1777)
    regular(tf, "bin/busybox", open(busybox, "rb").read(), 0o755)
    for applet in APPLETS:
        ti = tarfile.TarInfo("bin/" + applet)
        ti.type = tarfile.SYMTYPE
        ti.linkname = "busybox"
        ti.mode = 0o777
        add(tf, ti)
    regular(tf, "etc/passwd", PASSWD)
    regular(tf, "etc/group", GROUP)
    regular(tf, "var/www/index.html", b"hello from orc busybox\n")
    if pad_bytes > 0:
        regular(tf, "pad", random.Random(pad_bytes).randbytes(pad_bytes))
raws = [layer.getvalue()]
if add_user:
    users = io.BytesIO()
    with tarfile.open(fileobj=users, mode="w", format=tarfile.PAX_FORMAT) as tf:
        directory(tf, "etc")
        regular(tf, "etc/passwd", PASSWD + f"{add_user}:x:1234:1234::/tmp:/bin/sh\n".encode())
        regular(tf, "etc/group", GROUP + f"staff:x:50:{add_user}\n{add_user}:x:1234:\n".encode())
    raws.append(users.getvalue())
diff_ids = ["sha256:" + hashlib.sha256(raw).hexdigest() for raw in raws]
gzs = [gzip.compress(raw, compresslevel=6, mtime=0) for raw in raws]

def blob(data):
    return "sha256:" + hashlib.sha256(data).hexdigest(), data

image_config = {"Cmd": ["sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}
if image_user:
    image_config["User"] = image_user
config = json.dumps({
    "created": "2024-01-01T00:00:00Z",
    "architecture": arch,
    "os": "linux",
    "config": image_config,
    "rootfs": {"type": "layers", "diff_ids": diff_ids},
    "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "scripts/build-test-image.sh"}],
}, separators=(",", ":")).encode()
config_digest, _ = blob(config)
layer_digests = [blob(gz)[0] for gz in gzs]
manifest = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": len(config)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": len(gz)}
               for d, gz in zip(layer_digests, gzs)],
}, separators=(",", ":")).encode()
manifest_digest, _ = blob(manifest)
tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
index = json.dumps({
    "schemaVersion": 2,
    "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest, "size": len(manifest),
        "platform": {"architecture": arch, "os": "linux"},
        "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag},
    }],
}, separators=(",", ":")).encode()

with tarfile.open(out, mode="w", format=tarfile.PAX_FORMAT) as tf:
    regular(tf, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    regular(tf, "index.json", index)
    directory(tf, "blobs")
    directory(tf, "blobs/sha256")
    for digest, data in [(config_digest, config), *zip(layer_digests, gzs), (manifest_digest, manifest)]:
        regular(tf, "blobs/sha256/" + digest.split(":", 1)[1], data)
print(f"{out}: {name} manifest {manifest_digest}")
PY
