"""`tf.train.Example` and `tf.train.SequenceExample` message classes without TensorFlow.

The classes come from a descriptor written out here field for field after TensorFlow's
tensorflow/core/example/{feature,example}.proto (same field numbers, types, oneof and
maps, proto3 packing), in a private package and descriptor pool: the wire format is
TensorFlow's, so records written by either side parse on the other, and reading
TFRecord shards (in every decoding worker process too) does not import TensorFlow
(about 8 s and 650 MB per process).

  Example.FromString(record).features.feature['clip/label/index'].int64_list.value
  SequenceExample.FromString(record).feature_lists.feature_list['image/encoded']
"""
from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_PACKAGE = 'vivit_jax.tf_example'
_F = descriptor_pb2.FieldDescriptorProto


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
  proto = descriptor_pb2.FileDescriptorProto(
      name='vivit_jax/tf_example.proto', package=_PACKAGE, syntax='proto3')

  def message(name, fields, parent=None):
    m = (parent.nested_type if parent else proto.message_type).add(name=name)
    for name_, number, type_, label, type_name in fields:
      f = m.field.add(name=name_, number=number, type=type_, label=label)
      if type_name:
        f.type_name = f'.{_PACKAGE}.{type_name}'
    return m

  def map_field(m, name, value_type):
    entry = message(f'{name[0].upper()}{name[1:]}Entry', [
        ('key', 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, None),
        ('value', 2, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, value_type)], parent=m)
    entry.options.map_entry = True
    m.field.add(name=name, number=1, type=_F.TYPE_MESSAGE, label=_F.LABEL_REPEATED,
                type_name=f'.{_PACKAGE}.{m.name}.{entry.name}')

  repeated, optional = _F.LABEL_REPEATED, _F.LABEL_OPTIONAL
  message('BytesList', [('value', 1, _F.TYPE_BYTES, repeated, None)])
  message('FloatList', [('value', 1, _F.TYPE_FLOAT, repeated, None)])
  message('Int64List', [('value', 1, _F.TYPE_INT64, repeated, None)])
  feature = message('Feature', [('bytes_list', 1, _F.TYPE_MESSAGE, optional, 'BytesList'),
                                ('float_list', 2, _F.TYPE_MESSAGE, optional, 'FloatList'),
                                ('int64_list', 3, _F.TYPE_MESSAGE, optional, 'Int64List')])
  feature.oneof_decl.add(name='kind')
  for f in feature.field:
    f.oneof_index = 0
  map_field(message('Features', []), 'feature', 'Feature')
  message('FeatureList', [('feature', 1, _F.TYPE_MESSAGE, repeated, 'Feature')])
  map_field(message('FeatureLists', []), 'feature_list', 'FeatureList')
  message('Example', [('features', 1, _F.TYPE_MESSAGE, optional, 'Features')])
  message('SequenceExample', [
      ('context', 1, _F.TYPE_MESSAGE, optional, 'Features'),
      ('feature_lists', 2, _F.TYPE_MESSAGE, optional, 'FeatureLists')])
  return proto


def _message_classes() -> dict:
  pool = descriptor_pool.DescriptorPool()
  pool.Add(_file_descriptor())
  return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(
      f'{_PACKAGE}.{name}')) for name in ('Feature', 'Features', 'Example',
                                          'SequenceExample')}


_CLASSES = _message_classes()
Feature = _CLASSES['Feature']
Features = _CLASSES['Features']
Example = _CLASSES['Example']
SequenceExample = _CLASSES['SequenceExample']
