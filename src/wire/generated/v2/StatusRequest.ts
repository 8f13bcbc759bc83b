// Original file: proto/k8s.io/kms/apis/v2/api.proto


export interface StatusRequest {
}

export interface StatusRequest__Output {
}
