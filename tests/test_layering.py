"""The package's layering holds (the import-linter contracts in .importlinter), and the
check is not vacuous: an upward import or a cycle added to a copy of the package fails it.
Imports inside functions are only for optional heavy dependencies."""
import ast
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
LINT_IMPORTS = pathlib.Path(sys.executable).parent / 'lint-imports'
# Imported inside functions on purpose: heavy, optional, or TensorFlow-importing; and
# jax in vivit_jax.data, whose decode worker processes import it without JAX.
LAZY_IMPORTS_ALLOWED = {'tensorflow', 'tensorflow_datasets', 'torch', 'transformers',
                        'safetensors', 'clu', 'matplotlib', 'scipy_openblas32', 'av'}
LAZY_IMPORTS_ALLOWED_IN = {'vivit_jax/data/__init__.py': {'jax'},
                           'vivit_jax/export.py': {'jax'}}   # jax2tf imports TensorFlow.


def lint_imports(root: pathlib.Path) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=str(root))
  return subprocess.run([str(LINT_IMPORTS), '--config', str(REPO / '.importlinter'),
                         '--no-cache'], cwd=root, env=env, capture_output=True, text=True)


def test_layers_and_no_cycles():
  result = lint_imports(REPO)
  assert result.returncode == 0, result.stdout + result.stderr
  assert 'Contracts: 2 kept, 0 broken.' in result.stdout


@pytest.mark.parametrize('module, line, broken', [
    ('ops/switches.py', 'from vivit_jax import config', 'entry points -> inference -> train'),
    ('models/checks.py', 'from vivit_jax.train import steps', 'entry points -> inference -> train'),
    ('train/steps.py', 'from vivit_jax.train import trainer',
     'no import cycles between sibling modules'),
])
def test_an_upward_import_or_a_cycle_breaks_a_contract(tmp_path, module, line, broken):
  shutil.copytree(REPO / 'vivit_jax', tmp_path / 'vivit_jax',
                  ignore=shutil.ignore_patterns('__pycache__'))
  path = tmp_path / 'vivit_jax' / module
  path.write_text(path.read_text() + f'\n{line}\n')
  result = lint_imports(tmp_path)
  assert result.returncode == 1, result.stdout
  assert 'BROKEN' in result.stdout and broken in result.stdout.replace('\n', ' ')


def test_imports_inside_functions_are_only_optional_heavy_dependencies():
  offenders = []
  for path in sorted((REPO / 'vivit_jax').rglob('*.py')):
    tree = ast.parse(path.read_text(), str(path))
    for func in ast.walk(tree):
      if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
        continue
      for node in ast.walk(func):
        if isinstance(node, ast.Import):
          names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
          names = [node.module or '']
        else:
          continue
        for name in names:
          allowed = LAZY_IMPORTS_ALLOWED | LAZY_IMPORTS_ALLOWED_IN.get(
              str(path.relative_to(REPO)), set())
          if name.split('.')[0] not in allowed:
            offenders.append(f'{path.relative_to(REPO)}:{node.lineno} {name}')
  assert not offenders, 'imports inside functions:\n' + '\n'.join(sorted(set(offenders)))
