package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/strata-dev/strata/internal/registrytest"
	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/layerstore"
)

// putBlob uploads b to repo by the distribution API (monolithic), as the
// test's own client.
func putBlob(t *testing.T, base, repo string, b []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(b)
	resp, err := http.Post(base+"/v2/"+repo+"/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start upload: %s %v", resp.Status, err)
	}
	if !loc.IsAbs() {
		loc, _ = url.Parse(base + loc.String())
	}
	q := loc.Query()
	q.Set("digest", d.String())
	loc.RawQuery = q.Encode()
	req, _ := http.NewRequest(http.MethodPut, loc.String(), bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/octet-stream")
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload %s: %s", d, resp.Status)
	}
	return d
}

// putManifest stores a manifest or index under ref.
func putManifest(t *testing.T, base, repo, ref, mediaType string, b []byte) digest.Digest {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, base+"/v2/"+repo+"/manifests/"+ref, bytes.NewReader(b))
	req.Header.Set("Content-Type", mediaType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("put manifest %s: %s %s", ref, resp.Status, msg)
	}
	return digest.FromBytes(b)
}

// TestRegistry_Index pushes a two-platform image (the demo as amd64, and
// the same layers with a config saying arm64/v8) under an OCI index:
// --platform picks the manifest, the default is this machine's, a platform
// the index lacks is docker's "no matching manifest" and the repo digest
// recorded is the index's.
func TestRegistry_Index(t *testing.T) {
	registryEnv(t)
	reg := registrytest.Start(t, registrytest.Options{})
	base := reg.URL()
	src := storetest.Root(t)
	loadDemo(t, src)
	mustRun(t, src, "tag", "demo", reg.Addr+"/multi:amd64")
	mustRun(t, src, "push", reg.Addr+"/multi:amd64")
	amdID := storeImageID(t, src, "demo")
	man := manifestOf(t, base, "multi", "amd64")
	manRaw, _ := json.Marshal(man)

	// The arm64 image: its own config, the same layers.
	s, err := layerstore.Open(src, nil)
	if err != nil {
		t.Fatal(err)
	}
	img, err := s.ResolveImage("demo")
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	var config map[string]any
	json.Unmarshal(img.ConfigRaw, &config)
	config["architecture"], config["variant"] = "arm64", "v8"
	armCfg, _ := json.Marshal(config)
	armID := putBlob(t, base, "multi", armCfg)
	armMan := map[string]any{}
	json.Unmarshal(manRaw, &armMan)
	c := armMan["config"].(map[string]any)
	c["digest"], c["size"] = armID.String(), len(armCfg)
	armManRaw, _ := json.Marshal(armMan)
	mt := man["mediaType"].(string)
	armDigest := putManifest(t, base, "multi", "arm64", mt, armManRaw)
	amdDigest := digest.FromBytes(mustGet(t, base+"/v2/multi/manifests/amd64", mt))

	index := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[`+
		`{"mediaType":%q,"digest":%q,"size":%d,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},`+
		`{"mediaType":%q,"digest":%q,"size":%d,"platform":{"os":"linux","architecture":"amd64"}}]}`,
		mt, armDigest, len(armManRaw), mt, amdDigest, len(mustGet(t, base+"/v2/multi/manifests/amd64", mt)))
	indexDigest := putManifest(t, base, "multi", "latest", "application/vnd.oci.image.index.v1+json", []byte(index))

	arm := storetest.Root(t)
	out := mustRun(t, arm, "pull", "--platform", "linux/arm64", reg.Addr+"/multi")
	if !strings.Contains(out, "Digest: "+indexDigest.String()+"\n") || !strings.HasPrefix(out, "Using default tag: latest\n") {
		t.Errorf("pull --platform linux/arm64 printed:\n%s", out)
	}
	if got := storeImageID(t, arm, reg.Addr+"/multi"); got != armID.String() {
		t.Errorf("--platform linux/arm64 pulled %s, want %s", got, armID)
	}
	if got := strings.TrimSpace(mustRun(t, arm, "image", "inspect", "-f", "{{json .RepoDigests}}", reg.Addr+"/multi")); got != `["`+reg.Addr+`/multi@`+indexDigest.String()+`"]` {
		t.Errorf("RepoDigests: %s, want the index's digest", got)
	}
	amd := storetest.Root(t)
	mustRun(t, amd, "pull", "--platform", "linux/amd64", reg.Addr+"/multi:latest")
	if got := storeImageID(t, amd, reg.Addr+"/multi"); got != amdID {
		t.Errorf("--platform linux/amd64 pulled %s, want %s", got, amdID)
	}
	none := storetest.Root(t)
	r := runStrata(t, none, "", "pull", "--platform", "linux/s390x", reg.Addr+"/multi")
	if r.err == nil || !strings.Contains(r.stderr, "no matching manifest for linux/s390x in the manifest list entries") {
		t.Errorf("pull of a platform the index lacks: %v\n%s", r.err, r.stderr)
	}
	r = runStrata(t, none, "", "pull", "--platform", "linux/arm64", reg.Addr+"/multi:amd64")
	if r.err == nil || !strings.Contains(r.stderr, "does not match the specified platform") {
		t.Errorf("pull of a single-platform image for another platform: %v\n%s", r.err, r.stderr)
	}
	assertEmpty(t, none)
}

func mustGet(t *testing.T, u, accept string) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", accept)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}
