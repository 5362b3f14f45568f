#!/bin/sh
# Install mipd into DESTDIR the way both packages ship it (debian/rules and mipd.spec call this):
#
#   sh packaging/install.sh DESTDIR UNITDIR [PYTHON]
#
# run from the top of a staged source tree (packaging/build.py makes one). PYTHON (default
# /usr/bin/python3, >= 3.11) builds a private virtual environment in DESTDIR/usr/lib/mipd with mipd
# and its runtime dependencies from PyPI, exactly as requirements.txt pins them (hash-checked); it is
# then made relocatable to /usr/lib/mipd: no path into DESTDIR, the source tree or a home directory
# stays in it (checked at the end).
set -eu

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
    echo "usage: sh packaging/install.sh DESTDIR UNITDIR [PYTHON]" >&2
    exit 2
fi
dest=$(realpath -m "$1")
unitdir=$2
python=${3:-/usr/bin/python3}
prefix=/usr/lib/mipd
venv=$dest$prefix
src=$(pwd)

fail() { echo "packaging/install.sh: $*" >&2; exit 1; }

[ -f pyproject.toml ] && [ -d mipd ] || fail "run me from the top of mipd's source tree (not $src)"
[ -f requirements.txt ] || fail "$src has no requirements.txt (the lock: make lock writes it)"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || fail "$python is older than Python 3.11"

# --- the private virtual environment -------------------------------------------------------------
rm -rf "$venv"
"$python" -m venv "$venv"
# The locked dependencies, each checked against its hashes, then mipd itself adding nothing; not
# editable, no byte-compilation yet (it would record $venv in every .pyc).
pip_install() {
    "$venv/bin/python" -m pip install --quiet --root-user-action=ignore --no-compile --no-warn-script-location "$@"
}
pip_install --require-hashes -r "$src/requirements.txt"
pip_install --no-deps "$src"
"$venv/bin/python" -m pip uninstall --quiet --root-user-action=ignore --yes pip setuptools
# pip notes where each distribution came from (file:// URLs of the build tree): not needed to run.
rm -f "$venv"/lib/python3*/site-packages/*.dist-info/direct_url.json
rm -f "$venv"/bin/activate* "$venv"/bin/Activate.ps1
# Shebangs of the console scripts and pyvenv.cfg's "command =" name the venv where it was built.
grep -rlIZ -F "$venv" "$venv" | xargs -0 -r sed -i "s|$venv|$prefix|g"
# Byte-compile now, recording the installed paths; hash-checked so that file times do not matter
# (the service cannot rewrite them: /usr is read-only for it).
"$venv/bin/python" -m compileall -q -j 0 --invalidation-mode checked-hash -s "$dest" -p / "$venv/lib" >/dev/null

# Upstream wheels' compiled modules name their builders' directories (/root/... of a CI machine) in
# debug strings: binary files are checked for this build's directories only.
leftovers=$( (grep -rlF -e "$dest" -e "$src" "$venv"; grep -rlIF -e /root/ -e "${HOME:-/root}/" "$venv") || true)
[ -z "$leftovers" ] || fail "paths into the build tree or a home directory remain in: $leftovers"
for script in "$venv"/bin/*; do
    [ -f "$script" ] && [ ! -L "$script" ] || continue
    case $(head -c 2 "$script") in
    '#!') [ "$(head -n 1 "$script")" = "#!$prefix/bin/python" ] || fail "$script: shebang $(head -n 1 "$script")" ;;
    esac
done

# --- commands, units, manuals, examples, completion, configuration directories ----------------------
install -d "$dest/usr/bin"
ln -sf ../lib/mipd/bin/mipd "$dest/usr/bin/mipd"
ln -sf ../lib/mipd/bin/mipctl "$dest/usr/bin/mipctl"

install -D -m 0644 systemd/mipd@.service "$dest$unitdir/mipd@.service"
install -D -m 0644 systemd/mip.target "$dest$unitdir/mip.target"

for page in man/*; do
    [ -f "$page" ] || continue
    section=${page##*.}
    case $section in [1-8]) ;; *) fail "$page: not a manual page (name.SECTION)" ;; esac
    install -D -m 0644 "$page" "$dest/usr/share/man/man$section/${page##*/}"
done

docs=$dest/usr/share/doc/mipd
for example in home-agent foreign-agent mobile-node mobile-router; do
    install -D -m 0644 "etc/mip/$example.yaml" "$docs/examples/$example.yaml"
done
install -D -m 0644 README.md "$docs/README.md"
install -D -m 0644 packaging/README.md "$docs/README.packaging.md"

if [ -f completions/mipctl ]; then
    install -D -m 0644 completions/mipctl "$dest/usr/share/bash-completion/completions/mipctl"
fi

install -d -m 0755 "$dest/etc/mip"
install -d -m 0700 "$dest/etc/mip/keys"
