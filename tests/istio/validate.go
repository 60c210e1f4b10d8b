package main

// Validation exactly as istiod's validating webhook does it: each object goes, as an
// AdmissionReview, through the webhook's own HTTP handler (pkg/webhooks/validation/server) with
// the schemas istiod registers (pilot/pkg/bootstrap/validation.go: collections.PilotGatewayAPI).
// That handler decodes an EnvoyFilter's patch values strictly (pkg/config/validation), so a value
// the webhook refuses is refused here.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"istio.io/istio/pkg/config/schema/collections"
	"istio.io/istio/pkg/webhooks/validation/server"
)

type validationResult struct {
	Kind      string   `json:"kind"`
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	Allowed   bool     `json:"allowed"`
	Error     string   `json:"error,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
}

func validateAll(configYAML string) ([]validationResult, error) {
	mux := http.NewServeMux()
	if _, err := server.New(server.Options{Schemas: collections.PilotGatewayAPI(), DomainSuffix: "cluster.local", Mux: mux}); err != nil {
		return nil, err
	}
	var out []validationResult
	for _, doc := range splitYAML(configYAML) {
		raw, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			return nil, err
		}
		var meta struct {
			metav1.TypeMeta
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		if err := json.Unmarshal(raw, &meta); err != nil {
			return nil, err
		}
		gv := strings.SplitN(meta.APIVersion, "/", 2)
		if len(gv) != 2 {
			return nil, fmt.Errorf("apiVersion %q of %s", meta.APIVersion, meta.Kind)
		}
		review := admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{
				UID:       types.UID("review"),
				Kind:      metav1.GroupVersionKind{Group: gv[0], Version: gv[1], Kind: meta.Kind},
				Operation: admissionv1.Create,
				Namespace: meta.Metadata.Namespace,
				Name:      meta.Metadata.Name,
				Object:    runtime.RawExtension{Raw: raw},
			},
		}
		body, _ := json.Marshal(review)
		httpReq := httptest.NewRequest(http.MethodPost, "/validate", bytes.NewReader(body))
		httpReq.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httpReq)
		var answer admissionv1.AdmissionReview
		if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil || answer.Response == nil {
			return nil, fmt.Errorf("webhook answered %d %q", rec.Code, rec.Body.String())
		}
		r := validationResult{Kind: meta.Kind, Namespace: meta.Metadata.Namespace, Name: meta.Metadata.Name,
			Allowed: answer.Response.Allowed, Warnings: answer.Response.Warnings}
		if answer.Response.Result != nil {
			r.Error = answer.Response.Result.Message
		}
		out = append(out, r)
	}
	return out, nil
}

// splitYAML splits a multi-document stream, dropping empty documents.
func splitYAML(s string) []string {
	var docs []string
	for _, d := range strings.Split("\n"+s, "\n---") {
		if strings.TrimSpace(strings.TrimPrefix(d, "\n")) != "" {
			docs = append(docs, d)
		}
	}
	return docs
}
