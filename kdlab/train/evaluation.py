"""Top-1 accuracy, the one evaluation every method shares."""
import torch


@torch.no_grad()
def accuracy(model, x, y, batch_size=1024):
    """Top-1 accuracy in percent, evaluated in eval() mode and put back to the mode it was in."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        logits = model(x[start:start + batch_size])
        correct += (logits.argmax(dim=-1) == y[start:start + batch_size]).sum().item()
    model.train(was_training)
    return 100.0 * correct / max(len(x), 1)
