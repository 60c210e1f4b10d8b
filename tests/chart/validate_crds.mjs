// Validates Istio, Gateway API, cert-manager and prometheus-operator objects against their CRD
// schemas (the validators that @kubernetes-models generates from the CRDs). Reads a JSON array of
// objects on stdin; prints a JSON array with, per object, null when valid or the validation message.
import * as istioExt from "@kubernetes-models/istio/extensions.istio.io/v1alpha1";
import * as istioNetV1 from "@kubernetes-models/istio/networking.istio.io/v1";
import * as istioNetV1a3 from "@kubernetes-models/istio/networking.istio.io/v1alpha3";
import * as certManager from "@kubernetes-models/cert-manager/cert-manager.io/v1";
import * as gatewayApi from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1";
import * as monitoring from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const MODELS = {
  "extensions.istio.io/v1alpha1": istioExt,
  "networking.istio.io/v1": istioNetV1,
  "networking.istio.io/v1alpha3": istioNetV1a3,
  "cert-manager.io/v1": certManager,
  "gateway.networking.k8s.io/v1": gatewayApi,
  "monitoring.coreos.com/v1": monitoring,
};

let input = "";
for await (const chunk of process.stdin) input += chunk;
const results = JSON.parse(input).map((obj) => {
  const Model = MODELS[obj.apiVersion]?.[obj.kind];
  if (!Model) return `no schema for ${obj.apiVersion} ${obj.kind}`;
  try {
    new Model(obj).validate();
    return null;
  } catch (e) {
    return String(e.message);
  }
});
process.stdout.write(JSON.stringify(results));
