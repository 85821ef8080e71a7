import math

import torch

from edgekd.distill import hinton_loss, soft_target_loss


def _softmax(v):
    e = [math.exp(x) for x in v]
    return [x / sum(e) for x in e]


def test_soft_target_loss_equals_hand_computation():
    s, t, temp = [1.0, 2.0, 0.5], [0.2, 3.0, -1.0], 2.0
    p_t, p_s = _softmax([x / temp for x in t]), _softmax([x / temp for x in s])
    kl = sum(pt * (math.log(pt) - math.log(ps)) for pt, ps in zip(p_t, p_s, strict=True))
    got = soft_target_loss(torch.tensor([s]), torch.tensor([t]), temp)
    assert abs(float(got) - kl * temp * temp) < 1e-6


def test_hinton_loss_mixes_soft_and_hard_terms():
    s, t, y = torch.tensor([[1.0, 2.0, 0.5]]), torch.tensor([[0.2, 3.0, -1.0]]), torch.tensor([0])
    ce = -math.log(_softmax([1.0, 2.0, 0.5])[0])
    kd = float(soft_target_loss(s, t, 4.0))
    assert abs(float(hinton_loss(s, t, y, 4.0, 0.7)) - (0.7 * kd + 0.3 * ce)) < 1e-6
    assert abs(float(hinton_loss(s, t, y, 4.0, 0.0)) - ce) < 1e-6


def test_soft_loss_is_zero_when_student_matches_teacher_and_grad_reaches_student_only():
    t = torch.randn(4, 5)
    assert abs(float(soft_target_loss(t.clone(), t, 3.0))) < 1e-5
    s = torch.randn(4, 5, requires_grad=True)
    teacher = torch.randn(4, 5, requires_grad=True)
    hinton_loss(s, teacher.detach(), torch.tensor([0, 1, 2, 3]), 3.0, 0.5).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and teacher.grad is None
