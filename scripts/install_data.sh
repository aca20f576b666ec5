#!/usr/bin/env bash
# Best effort: the real Fashion-MNIST from Debian's package dataset-fashion-mnist.
# Without it the project still works on other data (--data-dir, digits).
set -u
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing dataset-fashion-mnist (Debian) ..."
    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
        || echo "warning: could not install dataset-fashion-mnist; pass --data-dir instead" >&2
else
    echo "note: Fashion-MNIST not found; 'sudo apt-get install dataset-fashion-mnist'" \
         "or pass --data-dir DIR with the idx files" >&2
fi
exit 0
