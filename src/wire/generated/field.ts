import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type { FieldServiceClient as _kms_envelope_field_v1_FieldServiceClient, FieldServiceDefinition as _kms_envelope_field_v1_FieldServiceDefinition } from './kms_envelope/field/v1/FieldService.js';
import type { LookupRequest as _kms_envelope_field_v1_LookupRequest, LookupRequest__Output as _kms_envelope_field_v1_LookupRequest__Output } from './kms_envelope/field/v1/LookupRequest.js';
import type { LookupResponse as _kms_envelope_field_v1_LookupResponse, LookupResponse__Output as _kms_envelope_field_v1_LookupResponse__Output } from './kms_envelope/field/v1/LookupResponse.js';
import type { LookupTokens as _kms_envelope_field_v1_LookupTokens, LookupTokens__Output as _kms_envelope_field_v1_LookupTokens__Output } from './kms_envelope/field/v1/LookupTokens.js';
import type { OpenRequest as _kms_envelope_field_v1_OpenRequest, OpenRequest__Output as _kms_envelope_field_v1_OpenRequest__Output } from './kms_envelope/field/v1/OpenRequest.js';
import type { OpenResponse as _kms_envelope_field_v1_OpenResponse, OpenResponse__Output as _kms_envelope_field_v1_OpenResponse__Output } from './kms_envelope/field/v1/OpenResponse.js';
import type { PlainRecord as _kms_envelope_field_v1_PlainRecord, PlainRecord__Output as _kms_envelope_field_v1_PlainRecord__Output } from './kms_envelope/field/v1/PlainRecord.js';
import type { SealRequest as _kms_envelope_field_v1_SealRequest, SealRequest__Output as _kms_envelope_field_v1_SealRequest__Output } from './kms_envelope/field/v1/SealRequest.js';
import type { SealResponse as _kms_envelope_field_v1_SealResponse, SealResponse__Output as _kms_envelope_field_v1_SealResponse__Output } from './kms_envelope/field/v1/SealResponse.js';
import type { SealedRecord as _kms_envelope_field_v1_SealedRecord, SealedRecord__Output as _kms_envelope_field_v1_SealedRecord__Output } from './kms_envelope/field/v1/SealedRecord.js';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  kms_envelope: {
    field: {
      v1: {
        FieldService: SubtypeConstructor<typeof grpc.Client, _kms_envelope_field_v1_FieldServiceClient> & { service: _kms_envelope_field_v1_FieldServiceDefinition }
        LookupRequest: MessageTypeDefinition<_kms_envelope_field_v1_LookupRequest, _kms_envelope_field_v1_LookupRequest__Output>
        LookupResponse: MessageTypeDefinition<_kms_envelope_field_v1_LookupResponse, _kms_envelope_field_v1_LookupResponse__Output>
        LookupTokens: MessageTypeDefinition<_kms_envelope_field_v1_LookupTokens, _kms_envelope_field_v1_LookupTokens__Output>
        OpenRequest: MessageTypeDefinition<_kms_envelope_field_v1_OpenRequest, _kms_envelope_field_v1_OpenRequest__Output>
        OpenResponse: MessageTypeDefinition<_kms_envelope_field_v1_OpenResponse, _kms_envelope_field_v1_OpenResponse__Output>
        PlainRecord: MessageTypeDefinition<_kms_envelope_field_v1_PlainRecord, _kms_envelope_field_v1_PlainRecord__Output>
        SealRequest: MessageTypeDefinition<_kms_envelope_field_v1_SealRequest, _kms_envelope_field_v1_SealRequest__Output>
        SealResponse: MessageTypeDefinition<_kms_envelope_field_v1_SealResponse, _kms_envelope_field_v1_SealResponse__Output>
        SealedRecord: MessageTypeDefinition<_kms_envelope_field_v1_SealedRecord, _kms_envelope_field_v1_SealedRecord__Output>
      }
    }
  }
}

