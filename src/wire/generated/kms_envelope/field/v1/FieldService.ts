// Original file: proto/kms_envelope/field/v1/field.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { LookupRequest as _kms_envelope_field_v1_LookupRequest, LookupRequest__Output as _kms_envelope_field_v1_LookupRequest__Output } from '../../../kms_envelope/field/v1/LookupRequest.js';
import type { LookupResponse as _kms_envelope_field_v1_LookupResponse, LookupResponse__Output as _kms_envelope_field_v1_LookupResponse__Output } from '../../../kms_envelope/field/v1/LookupResponse.js';
import type { OpenRequest as _kms_envelope_field_v1_OpenRequest, OpenRequest__Output as _kms_envelope_field_v1_OpenRequest__Output } from '../../../kms_envelope/field/v1/OpenRequest.js';
import type { OpenResponse as _kms_envelope_field_v1_OpenResponse, OpenResponse__Output as _kms_envelope_field_v1_OpenResponse__Output } from '../../../kms_envelope/field/v1/OpenResponse.js';
import type { SealRequest as _kms_envelope_field_v1_SealRequest, SealRequest__Output as _kms_envelope_field_v1_SealRequest__Output } from '../../../kms_envelope/field/v1/SealRequest.js';
import type { SealResponse as _kms_envelope_field_v1_SealResponse, SealResponse__Output as _kms_envelope_field_v1_SealResponse__Output } from '../../../kms_envelope/field/v1/SealResponse.js';

export interface FieldServiceClient extends grpc.Client {
  /**
   * Lookup tokens of a batch of values of one field, under every loaded master-key version,
   * so that a lookup also matches values indexed before a rotation; all-or-nothing.
   */
  Lookup(argument: _kms_envelope_field_v1_LookupRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_kms_envelope_field_v1_LookupResponse__Output>): grpc.ClientUnaryCall;
  Lookup(argument: _kms_envelope_field_v1_LookupRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_kms_envelope_field_v1_LookupResponse__Output>): grpc.ClientUnaryCall;
  Lookup(argument: _kms_envelope_field_v1_LookupRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_kms_envelope_field_v1_LookupResponse__Output>): grpc.ClientUnaryCall;
  Lookup(argument: _kms_envelope_field_v1_LookupRequest, callback: grpc.requestCallback<_kms_envelope_field_v1_LookupResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Lookup tokens of a batch of values of one field, under every loaded master-key version,
   * so that a lookup also matches values indexed before a rotation; all-or-nothing.
   */
  lookup(argument: _kms_envelope_field_v1_LookupRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_kms_envelope_field_v1_LookupResponse__Output>): grpc.ClientUnaryCall;
  lookup(argument: _kms_envelope_field_v1_LookupRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_kms_envelope_field_v1_LookupResponse__Output>): grpc.ClientUnaryCall;
  lookup(argument: _kms_envelope_field_v1_LookupRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_kms_envelope_field_v1_LookupResponse__Output>): grpc.ClientUnaryCall;
  lookup(argument: _kms_envelope_field_v1_LookupRequest, callback: grpc.requestCallback<_kms_envelope_field_v1_LookupResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Opens every field of every record; all-or-nothing for the batch.
   */
  Open(argument: _kms_envelope_field_v1_OpenRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_kms_envelope_field_v1_OpenResponse__Output>): grpc.ClientUnaryCall;
  Open(argument: _kms_envelope_field_v1_OpenRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_kms_envelope_field_v1_OpenResponse__Output>): grpc.ClientUnaryCall;
  Open(argument: _kms_envelope_field_v1_OpenRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_kms_envelope_field_v1_OpenResponse__Output>): grpc.ClientUnaryCall;
  Open(argument: _kms_envelope_field_v1_OpenRequest, callback: grpc.requestCallback<_kms_envelope_field_v1_OpenResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Opens every field of every record; all-or-nothing for the batch.
   */
  open(argument: _kms_envelope_field_v1_OpenRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_kms_envelope_field_v1_OpenResponse__Output>): grpc.ClientUnaryCall;
  open(argument: _kms_envelope_field_v1_OpenRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_kms_envelope_field_v1_OpenResponse__Output>): grpc.ClientUnaryCall;
  open(argument: _kms_envelope_field_v1_OpenRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_kms_envelope_field_v1_OpenResponse__Output>): grpc.ClientUnaryCall;
  open(argument: _kms_envelope_field_v1_OpenRequest, callback: grpc.requestCallback<_kms_envelope_field_v1_OpenResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Seals every field of every record; all-or-nothing for the batch.
   */
  Seal(argument: _kms_envelope_field_v1_SealRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_kms_envelope_field_v1_SealResponse__Output>): grpc.ClientUnaryCall;
  Seal(argument: _kms_envelope_field_v1_SealRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_kms_envelope_field_v1_SealResponse__Output>): grpc.ClientUnaryCall;
  Seal(argument: _kms_envelope_field_v1_SealRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_kms_envelope_field_v1_SealResponse__Output>): grpc.ClientUnaryCall;
  Seal(argument: _kms_envelope_field_v1_SealRequest, callback: grpc.requestCallback<_kms_envelope_field_v1_SealResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Seals every field of every record; all-or-nothing for the batch.
   */
  seal(argument: _kms_envelope_field_v1_SealRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_kms_envelope_field_v1_SealResponse__Output>): grpc.ClientUnaryCall;
  seal(argument: _kms_envelope_field_v1_SealRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_kms_envelope_field_v1_SealResponse__Output>): grpc.ClientUnaryCall;
  seal(argument: _kms_envelope_field_v1_SealRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_kms_envelope_field_v1_SealResponse__Output>): grpc.ClientUnaryCall;
  seal(argument: _kms_envelope_field_v1_SealRequest, callback: grpc.requestCallback<_kms_envelope_field_v1_SealResponse__Output>): grpc.ClientUnaryCall;
  
}

export interface FieldServiceHandlers extends grpc.UntypedServiceImplementation {
  /**
   * Lookup tokens of a batch of values of one field, under every loaded master-key version,
   * so that a lookup also matches values indexed before a rotation; all-or-nothing.
   */
  Lookup: grpc.handleUnaryCall<_kms_envelope_field_v1_LookupRequest__Output, _kms_envelope_field_v1_LookupResponse>;
  
  /**
   * Opens every field of every record; all-or-nothing for the batch.
   */
  Open: grpc.handleUnaryCall<_kms_envelope_field_v1_OpenRequest__Output, _kms_envelope_field_v1_OpenResponse>;
  
  /**
   * Seals every field of every record; all-or-nothing for the batch.
   */
  Seal: grpc.handleUnaryCall<_kms_envelope_field_v1_SealRequest__Output, _kms_envelope_field_v1_SealResponse>;
  
}

export interface FieldServiceDefinition extends grpc.ServiceDefinition {
  Lookup: MethodDefinition<_kms_envelope_field_v1_LookupRequest, _kms_envelope_field_v1_LookupResponse, _kms_envelope_field_v1_LookupRequest__Output, _kms_envelope_field_v1_LookupResponse__Output>
  Open: MethodDefinition<_kms_envelope_field_v1_OpenRequest, _kms_envelope_field_v1_OpenResponse, _kms_envelope_field_v1_OpenRequest__Output, _kms_envelope_field_v1_OpenResponse__Output>
  Seal: MethodDefinition<_kms_envelope_field_v1_SealRequest, _kms_envelope_field_v1_SealResponse, _kms_envelope_field_v1_SealRequest__Output, _kms_envelope_field_v1_SealResponse__Output>
}
