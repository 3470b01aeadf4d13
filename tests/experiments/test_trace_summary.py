"""experiments/trace_summary.py reads the device's op line of a profiler trace and
splits its time by op and kind of op (synthetic traces of the GPU and CPU layouts)."""
import gzip
import json

import pytest

from experiments import trace_summary


def meta(pid, tid=None, name=''):
  if tid is None:
    return {'ph': 'M', 'pid': pid, 'name': 'process_name', 'args': {'name': name}}
  return {'ph': 'M', 'pid': pid, 'tid': tid, 'name': 'thread_name', 'args': {'name': name}}


def op(pid, tid, name, us):
  return {'ph': 'X', 'pid': pid, 'tid': tid, 'name': name, 'ts': 0, 'dur': us}


def write(tmp_path, events):
  path = tmp_path / 'perfetto_trace.json.gz'
  with gzip.open(path, 'wt') as f:
    json.dump({'traceEvents': events}, f)
  return str(path)


def test_gpu_trace_uses_the_xla_ops_line_and_groups_layers(tmp_path):
  events = [meta(1, name='/host:CPU'), meta(1, 10, 'python3'),
            meta(2, name='/device:GPU:0'), meta(2, 20, 'Stream #13(Compute)'),
            meta(2, 21, 'XLA Ops'),
            op(1, 10, 'PjitFunction(step)', 9000),                 # host: not counted.
            op(2, 20, 'sm90_xmma_gemm_bf16', 5000),                # stream: duplicate.
            op(2, 21, 'custom-call.3', 100),
            op(2, 21, '__cudnn$fmhaSoftmax.1', 3000), op(2, 21, '__cudnn$fmhaSoftmax.2', 3000),
            op(2, 21, 'dot.4', 2000), op(2, 21, 'loop_convert_fusion.7', 1000),
            op(2, 21, 'convolution.2', 500), op(2, 21, 'copy.9', 400)]
  s = trace_summary.summarize(write(tmp_path, events))
  assert s['total_ms'] == pytest.approx(10.0)
  assert s['kinds'] == pytest.approx({'attention': 6.0, 'matmul': 2.0, 'fusion': 1.0,
                                      'convolution': 0.5, 'copy': 0.4, 'other': 0.1})
  assert s['ops'][0] == ('__cudnn$fmhaSoftmax', 'attention', pytest.approx(6.0), 2)


def test_gpu_trace_without_xla_ops_line_reads_the_streams(tmp_path):
  events = [meta(2, name='/device:GPU:0'), meta(2, 20, 'Stream #13(Compute)'),
            meta(2, 22, 'Stream #14(MemcpyH2D)'),
            op(2, 20, 'nvjet_tst_128x256', 4000), op(2, 20, 'cudnn_generated_fort_native_sdpa', 2000),
            op(2, 22, 'Memcpy HtoD', 500)]
  s = trace_summary.summarize(write(tmp_path, events))
  assert s['kinds'] == pytest.approx({'matmul': 4.0, 'attention': 2.0, 'copy': 0.5})


def test_cpu_trace_reads_the_xla_threads_and_skips_runtime_and_loops(tmp_path):
  events = [meta(1, name='/host:CPU'), meta(1, 10, 'benchmark.py'),
            meta(1, 11, 'tf_XLAEigen/1'), meta(1, 12, 'tf_XLAPjRtCpuClient/2'),
            op(1, 10, '$api.py:2479 block_until_ready', 9000),
            op(1, 11, 'ynn_fusion.3', 3000), op(1, 12, 'ynn_fusion.4', 1000),
            op(1, 12, 'while.2', 7000), op(1, 12, 'ThunkExecutor::Execute', 50),
            op(1, 11, 'end: ynn_fusion.3', 1), op(1, 11, 'negate_exponential_fusion', 500)]
  s = trace_summary.summarize(write(tmp_path, events))
  assert s['kinds'] == pytest.approx({'matmul': 4.0, 'fusion': 0.5})
  assert [o[0] for o in s['ops']] == ['ynn_fusion', 'negate_exponential_fusion']
  assert 'matmul 89%' in trace_summary.markdown(s)


def test_cpu_custom_calls_are_named_by_their_targets(tmp_path):
  """Given the program's text, the C++ kernels' `ffi_call.N` events split into matmul,
  attention and convolution; names not in the program keep their own."""
  hlo = '''
  %ffi_call.3 = f32[8,16]{1,0} custom-call(%p0, %p1), custom_call_target="vivit_jax_matmul_f32_mkl", api_version=API_VERSION_TYPED_FFI
  %ffi_call.4 = f32[8,16]{1,0} custom-call(%p0, %p1), custom_call_target="vivit_jax_matmul_f32_mkl"
  %ffi_call.12 = (f32[1,8,2,4]{3,2,1,0}, f32[1,2,8]{2,1,0}) custom-call(%q, %k, %v), custom_call_target="vivit_jax_flash_attention_f32"
  %ffi_call.20 = f32[27,96]{1,0} custom-call(%x, %g), custom_call_target="vivit_jax_depthwise_conv_kernel_grad_f32"
  %add.1 = f32[8,16]{1,0} add(%ffi_call.3, %ffi_call.4)
  '''
  events = [meta(1, 11, 'tf_XLAEigen/1'),
            op(1, 11, 'ffi_call.3', 2000), op(1, 11, 'ffi_call.4', 1000),
            op(1, 11, 'ffi_call.12', 1500), op(1, 11, 'ffi_call.20', 250),
            op(1, 11, 'ffi_call.99', 100), op(1, 11, 'add.1', 50)]
  path = write(tmp_path, events)
  s = trace_summary.summarize(path, hlo_text=hlo)
  assert s['kinds'] == pytest.approx({'matmul': 3.0, 'attention': 1.5, 'convolution': 0.25,
                                      'other': 0.15})
  assert s['ops'][0] == ('ffi_call vivit_jax_matmul_f32_mkl', 'matmul', pytest.approx(3.0), 2)
  assert ('ffi_call', 'other', pytest.approx(0.1), 1) in s['ops']
  assert trace_summary.summarize(path)['kinds'] == pytest.approx({'other': 4.9})


def test_time_is_split_by_source_module(tmp_path):
  """Given the program's text, each op's time goes to the model scope in its op_name
  metadata: transforms and the primitive dropped, repeated blocks summed, forward and
  backward (autodiff's transpose) apart; ops without metadata in a bucket of their own."""
  hlo = '''
  %fusion.1 = f32[8]{0} fusion(%p0), kind=kLoop, calls=%fc.1, metadata={op_name="jit(step)/jvp(MViT)/block_0/MlpBlock_0/Dense_0/dot_general" source_file="x.py" source_line=3}
  %fusion.2 = f32[8]{0} fusion(%p0), kind=kLoop, calls=%fc.2, metadata={op_name="jit(step)/jvp(MViT)/block_11/MlpBlock_0/Dense_0/add"}
  %fusion.3 = f32[8]{0} fusion(%p0), kind=kLoop, calls=%fc.3, metadata={op_name="jit(step)/transpose(jvp(MViT))/block_2/MlpBlock_0/Dense_0/dot_general"}
  %copy.4 = f32[8]{0} copy(%p0), metadata={op_name="jit(step)/jvp(MViT)/block_1/block_1.skip/pad"}
  ROOT %add.5 = f32[8]{0} add(%p0, %p0), metadata={op_name="jit(step)/add"}
  '''
  events = [meta(1, 11, 'tf_XLAEigen/1'),
            op(1, 11, 'fusion.1', 1000), op(1, 11, 'fusion.2', 500),
            op(1, 11, 'fusion.3', 2000), op(1, 11, 'copy.4', 250),
            op(1, 11, 'add.5', 100), op(1, 11, 'ffi_call.7', 50)]
  path = write(tmp_path, events)
  modules = dict(trace_summary.summarize(path, hlo_text=hlo)['modules'])
  assert modules == pytest.approx({
      'block_*/MlpBlock_0/Dense_0 (backward)': 2.0,
      'block_*/MlpBlock_0/Dense_0 (forward)': 1.5,
      'block_*/block_*.skip (forward)': 0.25,
      '(top level) (forward)': 0.1,
      '(no metadata)': 0.05})
  assert '| block_*/MlpBlock_0/Dense_0 (backward) | 2.000 |' in trace_summary.markdown(
      trace_summary.summarize(path, hlo_text=hlo))
  assert trace_summary.summarize(path)['modules'] == []   # no program text, no modules
