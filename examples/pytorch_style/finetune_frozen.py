"""Transfer learning the PyTorch way, running on convnp: pretrain a small CNN, save its state_dict
with ``torch.save``, load it into a fresh model with ``torch.load``, freeze the feature extractor
(``requires_grad = False``), replace the classifier head and fine-tune only the head, with Adam and
an exponential learning-rate decay.

Only the import lines differ from the PyTorch script (see tests/test_pytorch_style.py).

    python examples/pytorch_style/finetune_frozen.py --data-root ~/.cache/convnp
"""
import argparse
import os
import tempfile
from collections import OrderedDict

import convnp as torch
import convnp.nn as nn
import convnp.nn.functional as F
import convnp.optim as optim
from convnp.utils.data import DataLoader, random_split
from convnp.vision import datasets, transforms


class SmallCNN(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(OrderedDict([
            ('conv1', nn.Conv2d(1, 8, kernel_size=3, padding=1)),
            ('bn1', nn.BatchNorm2d(8)),
            ('relu1', nn.ReLU(inplace=True)),
            ('pool1', nn.MaxPool2d(2)),
            ('conv2', nn.Conv2d(8, 16, kernel_size=3, padding=1)),
            ('relu2', nn.ReLU(inplace=True)),
            ('pool2', nn.AdaptiveAvgPool2d((4, 4))),
        ]))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(16 * 4 * 4, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


def train_epoch(model, loader, optimizer, device, max_batches=None):
    model.train()
    losses = []
    for batch_idx, (data, target) in enumerate(loader):
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(data), target, label_smoothing=0.05)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if max_batches is not None and batch_idx + 1 >= max_batches:
            break
    return losses


@torch.no_grad()
def evaluate(model, loader, device):
    model.eval()
    correct, total = 0, 0
    for data, target in loader:
        data, target = data.to(device), target.to(device)
        correct += (model(data).argmax(dim=1) == target).sum().item()
        total += target.numel()
    return correct / max(total, 1)


def freeze_and_replace_head(model, num_classes):
    for param in model.features.parameters():
        param.requires_grad = False
    model.features.eval()
    model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    return [p for p in model.parameters() if p.requires_grad]


def main(argv=None):
    parser = argparse.ArgumentParser(description='freeze and fine-tune')
    parser.add_argument('--data-root', default='../data')
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--subset', type=int, default=5000, help='training images used (0: all)')
    parser.add_argument('--max-batches', type=int, default=None)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])

    # 1. "pretrain" on MNIST digits and save the weights, as a published checkpoint would be
    digits = datasets.MNIST(args.data_root, train=True, download=True, transform=transform)
    if args.subset:
        digits, _ = random_split(digits, [args.subset, len(digits) - args.subset])
    model = SmallCNN().to(device)
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    losses = train_epoch(model, DataLoader(digits, batch_size=args.batch_size, shuffle=True), optimizer, device,
                         args.max_batches)
    print(f'pretraining: loss {losses[0]:.3f} -> {losses[-1]:.3f}')
    checkpoint = os.path.join(tempfile.mkdtemp(), 'pretrained.pt')
    torch.save(model.state_dict(), checkpoint)

    # 2. a fresh model with the pretrained weights, frozen features and a new 10-class head
    model = SmallCNN().to(device)
    model.load_state_dict(torch.load(checkpoint, map_location=device))
    trainable = freeze_and_replace_head(model, num_classes=10)
    print(f'fine-tuning {sum(p.numel() for p in trainable)} of {sum(p.numel() for p in model.parameters())} '
          f'parameters')
    clothes = datasets.FashionMNIST(args.data_root, train=True, download=True, transform=transform)
    if args.subset:
        clothes, _ = random_split(clothes, [args.subset, len(clothes) - args.subset])
    train_set, val_set = random_split(clothes, [0.9, 0.1], generator=torch.Generator().manual_seed(42))
    optimizer = optim.Adam(trainable, lr=3e-3)
    scheduler = optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.8)
    for epoch in range(3):
        losses = train_epoch(model, DataLoader(train_set, batch_size=args.batch_size, shuffle=True), optimizer,
                             device, args.max_batches)
        model.features.eval()  # keep the frozen batch-norm statistics
        accuracy = evaluate(model, DataLoader(val_set, batch_size=256), device)
        scheduler.step()
        print(f'epoch {epoch}: loss {losses[-1]:.3f}, validation accuracy {accuracy:.3f}, '
              f'lr {scheduler.get_last_lr()[0]:.5f}')


if __name__ == '__main__':
    main()
