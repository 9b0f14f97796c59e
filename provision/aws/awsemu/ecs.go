package awsemu

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (e *Emulator) serveECS(w http.ResponseWriter, r *http.Request, target string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	action, ok := strings.CutPrefix(target, "AmazonEC2ContainerServiceV20141113.")
	fail := func(err *apiError) {
		writeJSON(w, err.Status, map[string]string{"__type": err.Code, "message": err.Message})
	}
	if !ok {
		fail(errf(400, "UnknownOperationException", "unknown target %s", target))
		return
	}
	if err := e.gate(action, "ThrottlingException", 400, "AccessDeniedException"); err != nil {
		if err.Status == 403 {
			err.Status = 400
		}
		fail(err)
		return
	}
	if e.Policy != "" && !e.policyAllows("ecs", action, nil) {
		fail(errf(400, "AccessDeniedException", "User is not authorized to perform: ecs:%s (denied by the attached policy)", action))
		return
	}
	var in struct {
		Cluster       string   `json:"cluster"`
		ServiceName   string   `json:"serviceName"`
		DesiredStatus string   `json:"desiredStatus"`
		NextToken     string   `json:"nextToken"`
		Tasks         []string `json:"tasks"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		fail(errf(400, "SerializationException", "bad JSON: %v", err))
		return
	}
	if action == "ListClusters" {
		var arns []string
		for _, c := range sortedKeys(e.clusters) {
			arns = append(arns, fmt.Sprintf("arn:aws:ecs:%s:%s:cluster/%s", e.Region, e.Account, c))
		}
		items, next, err := page(arns, in.NextToken, e.PageSize)
		if err != nil {
			fail(err)
			return
		}
		writeJSON(w, 200, map[string]any{"clusterArns": items, "nextToken": next})
		return
	}
	cluster := in.Cluster
	if cluster == "" {
		cluster = "default"
	}
	if i := strings.LastIndex(cluster, ":cluster/"); i >= 0 {
		cluster = cluster[i+len(":cluster/"):]
	}
	services, ok := e.clusters[cluster]
	if !ok {
		fail(errf(400, "ClusterNotFoundException", "Cluster not found."))
		return
	}
	switch action {
	case "ListServices":
		var arns []string
		for _, s := range sortedKeys(services) {
			arns = append(arns, fmt.Sprintf("arn:aws:ecs:%s:%s:service/%s/%s", e.Region, e.Account, cluster, s))
		}
		items, next, err := page(arns, in.NextToken, e.PageSize)
		if err != nil {
			fail(err)
			return
		}
		writeJSON(w, 200, map[string]any{"serviceArns": items, "nextToken": next})
	case "ListTasks":
		svc := in.ServiceName
		if i := strings.LastIndex(svc, "/"); i >= 0 {
			svc = svc[i+1:]
		}
		if svc != "" && !services[svc] {
			fail(errf(400, "ServiceNotFoundException", "Service not found."))
			return
		}
		var arns []string
		for _, k := range sortedKeys(e.tasks) {
			t := e.tasks[k]
			if t.Cluster == cluster && (svc == "" || t.Service == svc) {
				arns = append(arns, t.Arn)
			}
		}
		items, next, err := page(arns, in.NextToken, e.PageSize)
		if err != nil {
			fail(err)
			return
		}
		writeJSON(w, 200, map[string]any{"taskArns": items, "nextToken": next})
	case "DescribeTasks":
		if len(in.Tasks) > 100 {
			fail(errf(400, "InvalidParameterException", "at most 100 tasks per call"))
			return
		}
		tasks, failures := []any{}, []any{}
		for _, arn := range in.Tasks {
			t := e.tasks[arn]
			if t == nil || t.Cluster != cluster {
				failures = append(failures, map[string]string{"arn": arn, "reason": "MISSING"})
				continue
			}
			tasks = append(tasks, map[string]any{
				"taskArn": t.Arn, "clusterArn": fmt.Sprintf("arn:aws:ecs:%s:%s:cluster/%s", e.Region, e.Account, cluster),
				"group": "service:" + t.Service, "launchType": t.LaunchType, "lastStatus": "RUNNING", "desiredStatus": "RUNNING",
				"attachments": []any{map[string]any{"id": "att-" + arn[len(arn)-8:], "type": "ElasticNetworkInterface", "status": "ATTACHED",
					"details": []any{map[string]string{"name": "subnetId", "value": "subnet-0emu"}, map[string]string{"name": "networkInterfaceId", "value": t.ENI}}}},
			})
		}
		writeJSON(w, 200, map[string]any{"tasks": tasks, "failures": failures})
	default:
		fail(errf(400, "UnknownOperationException", "operation %s is not emulated", action))
	}
}
