"""Makes the NCSN++ test data of flowgrad-models by running the ORIGINAL RectifiedFlow code.

Usage: python make_ncsnpp_data.py <RectifiedFlow checkout>/ImageGeneration <out dir>
(torch 2.9.1 CPU, numpy; RectifiedFlow 5a1fd4dd3ea7db764ce370a84ce35f9c8b15fde6.)

Prints the parameter count of the CelebA-HQ 256 config, writes a small training checkpoint
`ncsnpp_tiny.pth` (DataParallel keys, EMA = parameters + 1 + index) with its config, and
part-A fixture sets (FORMAT.md layout) for configs the shipped set does not cover.
"""
import sys, json, os, struct
import torch, numpy as np
import torch.utils.cpp_extension as cpp
cpp.load = lambda *a, **k: None          # skip the CUDA JIT build; CPU dispatches to upfirdn2d_native
sys.path.insert(0, sys.argv[1])           # .../ImageGeneration
from models import ncsnpp  # noqa: registers the model
from models import utils as mutils

def save_safetensors(tensors, path):
    header, blobs, off = {}, [], 0
    for k, t in tensors.items():
        a = t.detach().cpu().contiguous().numpy()
        dt = {np.dtype('float32'): 'F32', np.dtype('float64'): 'F64', np.dtype('int64'): 'I64'}[a.dtype]
        b = a.tobytes(); header[k] = {'dtype': dt, 'shape': list(a.shape), 'data_offsets': [off, off + len(b)]}
        off += len(b); blobs.append(b)
    h = json.dumps(header).encode(); h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h))); f.write(h); [f.write(b) for b in blobs]


class Cfg(dict):
    __getattr__ = dict.__getitem__
    def __setattr__(self, k, v): self[k] = v

def base_config():
    data = Cfg(dataset='CelebA-HQ-Pytorch', image_size=256, random_flip=True, uniform_dequantization=False,
               centered=True, num_channels=3, root_path='YOUR_ROOT_PATH')
    model = Cfg(sigma_max=378, sigma_min=0.01, num_scales=2000, beta_min=0.1, beta_max=20., dropout=0.,
                embedding_type='fourier', name='ncsnpp', scale_by_sigma=True, ema_rate=0.999,
                normalization='GroupNorm', nonlinearity='swish', nf=128, ch_mult=(1, 1, 2, 2, 2, 2, 2),
                num_res_blocks=2, attn_resolutions=(16,), resamp_with_conv=True, conditional=True, fir=True,
                fir_kernel=[1, 3, 3, 1], skip_rescale=True, resblock_type='biggan', progressive='output_skip',
                progressive_input='input_skip', progressive_combine='sum', attention_type='ddpm', init_scale=0.,
                fourier_scale=16, conv_size=3)
    training = Cfg(sde='rectified_flow', continuous=False)
    return Cfg(data=data, model=model, training=training)

def count(cfg):
    net = ncsnpp.NCSNpp(cfg)
    return sum(p.numel() for p in net.parameters())

def jsonable(cfg):
    return {k: ({kk: (list(vv) if isinstance(vv, tuple) else vv) for kk, vv in v.items()}) for k, v in cfg.items()}

def fixture(cfg, seed, batch, out_dir, gain=30.0):
    torch.manual_seed(seed)
    net = ncsnpp.NCSNpp(cfg).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        # scale the output convs so that v is not ~0 (as the shipped set does)
        for m in net.all_modules:
            if isinstance(m, torch.nn.Conv2d) and m.out_channels == cfg.data.num_channels:
                m.weight.mul_(gain); m.bias.mul_(gain)
    res = cfg.data.image_size
    x = torch.randn(batch, cfg.data.num_channels, res, res)
    t_unit = torch.rand(batch) * 0.95 + 0.05
    t_unit[0] = 1e-3
    t = t_unit * 999
    if cfg.model.embedding_type == 'positional':
        t = torch.floor(t) + 0.25   # the original indexes sigmas[t.long()]
    x.requires_grad_(True)
    v = net(x, t)
    g = torch.randn_like(v)
    (vjp,) = torch.autograd.grad((v * g).sum(), x)
    os.makedirs(out_dir, exist_ok=True)
    sd = {k: v.detach().float().contiguous() for k, v in net.state_dict().items()}
    save_safetensors(sd, os.path.join(out_dir, 'weights.safetensors'))
    # positional models divide by the f64 `sigmas` buffer, so v comes out f64: stored as f32
    save_safetensors({'x': x.detach(), 't_unit': t_unit, 't': t, 'v': v.detach().float(), 'g': g.float(), 'vjp_x': vjp.float()},
                     os.path.join(out_dir, 'io.safetensors'))
    conf = jsonable(cfg)
    conf['fixture'] = {'seed': seed, 'batch': batch, 'num_params': sum(p.numel() for p in net.parameters()),
                       'state_dict_keys_in_order': list(net.state_dict().keys()), 'output_gain': gain}
    json.dump(conf, open(os.path.join(out_dir, 'config.json'), 'w'), sort_keys=True, indent=1)
    return net

def tiny_pth(path):
    cfg = base_config()
    cfg.data.image_size = 16
    cfg.model.update(nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,))
    torch.manual_seed(7)
    net = torch.nn.DataParallel(ncsnpp.NCSNpp(cfg))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    shadow = [p.clone().detach() + 1.0 + i for i, p in enumerate(q for q in net.parameters() if q.requires_grad)]
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    state = {'optimizer': opt.state_dict(), 'model': net.state_dict(),
             'ema': {'decay': 0.999, 'num_updates': 3, 'shadow_params': shadow}, 'step': 3}
    torch.save(state, path)
    conf = jsonable(cfg)
    names = [n for n, p in net.module.named_parameters() if p.requires_grad]
    conf['ema_parameter_order'] = names
    json.dump(conf, open(path + '.config.json', 'w'), sort_keys=True, indent=1)

if __name__ == '__main__':
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    out = sys.argv[2]
    cfg = base_config()
    print('celeba_hq_256 params', count(cfg))
    tiny_pth(os.path.join(out, 'ncsnpp_tiny.pth'))
    variants = {
        'positional_inres': dict(embedding_type='positional', progressive_input='residual',
                                 nf=8, ch_mult=(1, 2, 2), attn_resolutions=(8,), num_res_blocks=1),
        'nofir_none_cat_uncentered': dict(fir=False, progressive='none', progressive_input='input_skip',
                                          progressive_combine='cat', nf=8, ch_mult=(1, 2), attn_resolutions=(16,),
                                          num_res_blocks=2, scale_by_sigma=False, skip_rescale=False),
        'fir5_unconditional_lrelu_inres': dict(fir_kernel=[1, 4, 6, 4, 1], conditional=False, nonlinearity='lrelu',
                                               nf=8, ch_mult=(1, 1, 2), attn_resolutions=(4,), num_res_blocks=1,
                                               progressive_input='residual'),
        'nofir_inres_elu': dict(fir=False, progressive='none', progressive_input='residual', nonlinearity='elu',
                                nf=8, ch_mult=(1, 2), attn_resolutions=(8,), num_res_blocks=1),
    }
    for name, over in variants.items():
        c = base_config()
        c.data.image_size = 16
        if 'uncentered' in name:
            c.data.centered = False
        c.model.update(over)
        fixture(c, 1234, 2, os.path.join(out, name))
        print(name, 'ok')
