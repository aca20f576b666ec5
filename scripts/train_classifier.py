"""Train the Fashion-MNIST feature classifier: ``python scripts/train_classifier.py OUT.pt``."""

import sys

from sddpm.classifier import train_classifier

if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "checkpoints/fmnist-classifier.pt"
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    info = train_classifier(out, epochs=epochs)
    print(f"wrote {out}: test accuracy {info['test_accuracy']:.4f} after {info['epochs']} "
          f"epochs, {info['seconds']} s")
