//! The built-in ingress on the one-node cluster of `support::kubelet` (needs root,
//! containerd and curl; see there): the `orc` IngressClass, host and path routing to real
//! pods, 404 and 503, the default backend, TLS with SNI from a Secret over HTTP/2, an
//! Upgrade passed through, a streamed body, retry past a refusing endpoint,
//! X-Forwarded-* headers at the pod, `status.loadBalancer`, an Ingress of another class
//! left alone, and invalid Ingresses refused. Requests are sent
//! with curl from inside the test's network namespace to the node's address on the
//! default ports 80 and 443.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

mod support;
use support::host::{on_netns_thread, run};
use support::kubelet::*;
use support::wait::wait_until_every;

/// How long one curl may take.
const CURL_TIMEOUT_S: &str = "5";

/// A pod answering every request with the request's head (its headers as the body),
/// `101 Switching Protocols` followed by an echo of the connection to any Upgrade
/// request, and to `GET /stream` "first", then after 3 s "second" (a body the proxy must
/// not hold back): busybox `nc -ll -e` runs the script per connection.
const ECHO: &str = r#"---
apiVersion: v1
kind: ConfigMap
metadata:
  name: echo-script
data:
  echo.sh: |
    #!/bin/sh
    head=""
    upgrade=""
    while IFS= read -r line; do
      line=$(printf '%s' "$line" | tr -d '\r')
      [ -z "$line" ] && break
      head="$head$line
    "
      case "$line" in [Uu]pgrade:*) upgrade=1;; esac
    done
    case "$head" in "GET /stream "*)
      printf 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nfirst\n'
      sleep 3
      printf 'second\n'
      exit 0;;
    esac
    if [ -n "$upgrade" ]; then
      printf 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n'
      exec cat
    fi
    len=$(printf '%s' "$head" | wc -c)
    printf 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' "$len" "$head"
---
apiVersion: v1
kind: Pod
metadata:
  name: echo
  labels:
    app: echo
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: echo
    image: IMAGE
    imagePullPolicy: IfNotPresent
    command: ["nc", "-ll", "-p", "8080", "-e", "/script/echo.sh"]
    volumeMounts:
    - name: script
      mountPath: /script
  volumes:
  - name: script
    configMap:
      name: echo-script
      defaultMode: 0755
"#;

/// An httpd pod that serves its hostname at `/` and at `/api/`.
fn api_pod(name: &str) -> String {
    format!(
        "---
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels:
    app: api
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: httpd
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", \"mkdir -p /www/api && hostname > /www/index.html && hostname > /www/api/index.html && exec httpd -f -p 8080 -h /www\"]
    volumeMounts:
    - name: www
      mountPath: /www
  volumes:
  - name: www
    emptyDir: {{}}
"
    )
}

fn service(name: &str) -> String {
    format!(
        "---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector:
    app: {name}
  ports:
  - name: http
    port: 80
    targetPort: 8080
"
    )
}

const INGRESSES: &str = r#"---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: nginx
spec:
  controller: k8s.io/ingress-nginx
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: routes
spec:
  tls:
  - hosts: [secure.example.com]
    secretName: secure-tls
  rules:
  - host: web.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: web
            port:
              number: 80
      - path: /api
        pathType: Prefix
        backend:
          service:
            name: api
            port:
              name: http
  - host: "*.apps.example.com"
    http:
      paths:
      - path: /
        pathType: ImplementationSpecific
        backend:
          service:
            name: echo
            port:
              number: 80
  - host: secure.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: web
            port:
              number: 80
  - host: missing.example.com
    http:
      paths:
      - path: /
        pathType: Exact
        backend:
          service:
            name: nobody
            port:
              number: 80
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: foreign
spec:
  ingressClassName: nginx
  rules:
  - host: foreign.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: web
            port:
              number: 80
"#;

const FALLBACK: &str = r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: fallback
spec:
  ingressClassName: orc
  defaultBackend:
    service:
      name: api
      port:
        number: 80
"#;

/// `curl` run in the test's network namespace: (exit status ok, stdout, stderr).
fn curl(w: &World, args: &[&str]) -> (bool, String, String) {
    let out = run(w
        .in_netns("curl")
        .args(["-sS", "--max-time", CURL_TIMEOUT_S])
        .args(args));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `http://NODE_IP/path` with `Host: host`: (status code, body).
fn get(w: &World, host: &str, path: &str) -> Result<(u16, String), String> {
    let url = format!("http://{NODE_IP}{path}");
    let (ok, out, err) = curl(
        w,
        &["-H", &format!("Host: {host}"), "-w", "\n%{http_code}", &url],
    );
    if !ok {
        return Err(err);
    }
    let (body, code) = out.rsplit_once('\n').ok_or("no status code")?;
    Ok((
        code.trim().parse().map_err(|_| out.clone())?,
        body.trim().to_string(),
    ))
}

/// Waits until `host``path` answers `code` with a body satisfying `body_ok`.
fn expect(w: &World, host: &str, path: &str, code: u16, body_ok: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    wait_until_every(
        DEADLINE,
        POLL_EVERY,
        &format!("http://{host}{path} to answer {code}"),
        || match get(w, host, path) {
            Ok((c, body)) if c == code && body_ok(&body) => {
                last = body;
                Ok(())
            }
            other => Err(format!("got {other:?}")),
        },
    );
    last
}

fn write_tls_secret(w: &World) {
    let mut params = rcgen::CertificateParams::new(vec!["secure.example.com".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "secure.example.com");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (crt, pem_key) = (w.dir.join("secure.crt"), w.dir.join("secure.key"));
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&pem_key, key.serialize_pem()).unwrap();
    w.kubectl_ok(&[
        "create",
        "secret",
        "tls",
        "secure-tls",
        &format!("--cert={}", crt.display()),
        &format!("--key={}", pem_key.display()),
    ]);
}

/// An Upgrade request through the ingress; the bytes echoed after the 101.
fn upgrade_roundtrip(w: &World, host: &'static str) -> Result<String, String> {
    let addr: SocketAddr = format!("{NODE_IP}:80").parse().unwrap();
    on_netns_thread(&w.netns_path(), move || {
        let mut s =
            TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(|e| e.to_string())?;
        let req = format!(
            "GET /chat HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
        );
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).map_err(|e| format!("read head: {e}"))? == 0 {
                return Err(format!("closed after {:?}", String::from_utf8_lossy(&head)));
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            return Err(format!("no 101: {head:?}"));
        }
        s.write_all(b"ping over the upgraded connection\n")
            .map_err(|e| e.to_string())?;
        let mut echoed = vec![0u8; 34];
        s.read_exact(&mut echoed)
            .map_err(|e| format!("read echo: {e}"))?;
        Ok(String::from_utf8_lossy(&echoed).into_owned())
    })
}

#[test]
fn ingress_routes_hosts_paths_and_tls_to_pods() {
    let w = World::start();
    w.step("The orc IngressClass exists and is the default");
    w.wait_for("IngressClass orc", || {
        w.kubectl_out(&[
            "get",
            "ingressclass",
            "orc",
            "-o",
            "jsonpath={.spec.controller}",
        ]) == "orc.io/ingress"
    });
    let classes = w.kubectl_ok(&["get", "ingressclass"]);
    assert!(
        classes.contains("CONTROLLER") && classes.contains("PARAMETERS"),
        "{classes}"
    );

    w.step("Pods and Services start");
    let mut yaml = ECHO.replace("IMAGE", IMAGE);
    yaml.push_str(&httpd_pod("web-1", "default", "web"));
    yaml.push_str(&api_pod("api-1"));
    for name in ["web", "api", "echo"] {
        yaml.push_str(&service(name));
    }
    w.apply(&yaml);
    for pod in ["web-1", "api-1", "echo"] {
        w.wait_running(pod);
    }
    write_tls_secret(&w);
    w.apply(INGRESSES);

    w.step("A classless Ingress gets the default class, and the table shows it");
    assert_eq!(
        w.kubectl_out(&[
            "get",
            "ingress",
            "routes",
            "-o",
            "jsonpath={.spec.ingressClassName}"
        ]),
        "orc"
    );

    w.step("Host and path routing reach the pods");
    expect(&w, "web.example.com", "/", 200, |b| b == "web-1");
    expect(&w, "web.example.com", "/anything/else", 404, |_| true); // httpd's own 404
    expect(&w, "web.example.com", "/api/", 200, |b| b == "api-1");
    expect(&w, "WEB.example.com:80", "/api/", 200, |b| b == "api-1");

    w.step("A wildcard host reaches the echo pod with X-Forwarded-* headers");
    let head = expect(&w, "shop.apps.example.com", "/cart?x=1", 200, |b| {
        b.contains("x-forwarded-for")
    });
    let lower = head.to_ascii_lowercase();
    for want in [
        format!("x-forwarded-for: {NODE_IP}"),
        "x-forwarded-proto: http".to_string(),
        "x-forwarded-host: shop.apps.example.com".to_string(),
        format!("x-real-ip: {NODE_IP}"),
        "host: shop.apps.example.com".to_string(),
        "get /cart?x=1 http/1.1".to_string(),
    ] {
        assert!(lower.contains(&want), "{want:?} not in {head:?}");
    }

    w.step("Bodies stream: the first part arrives before the pod has finished");
    let url = format!("http://{NODE_IP}/stream");
    let host = "Host: x.apps.example.com";
    let (ok, out, _) = curl(&w, &["-H", host, "--max-time", "2", &url]);
    assert!(!ok && out == "first\n", "cut off after 2 s: {out:?}");
    let (ok, out, err) = curl(&w, &["-H", host, &url]);
    assert!(ok && out == "first\nsecond\n", "{out:?} {err}");

    w.step("An Upgrade request is passed through to the pod");
    wait_until_every(
        DEADLINE,
        POLL_EVERY,
        "an upgraded connection echoing",
        || match upgrade_roundtrip(&w, "chat.apps.example.com") {
            Ok(echoed) if echoed == "ping over the upgraded connection\n" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );

    w.step("A connection refused by one endpoint is retried on the next");
    let web_ip = w.kubectl_out(&["get", "pod", "web-1", "-o", "jsonpath={.status.podIP}"]);
    w.apply(&format!(
        "---
apiVersion: v1
kind: Service
metadata:
  name: flaky
spec:
  ports:
  - name: http
    port: 80
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: flaky-1
  labels:
    kubernetes.io/service-name: flaky
addressType: IPv4
ports:
- name: http
  port: 8080
endpoints:
- addresses: [\"{NODE_IP}\"]
- addresses: [\"{web_ip}\"]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: flaky
spec:
  rules:
  - host: flaky.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: flaky
            port:
              name: http
"
    ));
    expect(&w, "flaky.example.com", "/", 200, |b| b == "web-1");
    for _ in 0..6 {
        // Every other request starts at the endpoint nothing listens on.
        assert_eq!(
            get(&w, "flaky.example.com", "/"),
            Ok((200, "web-1".to_string()))
        );
    }

    w.step("Unknown hosts, other classes and missing backends: 404 and 503");
    let body = expect(&w, "nobody.example.com", "/", 404, |_| true);
    assert_eq!(body, "404 page not found");
    expect(&w, "foreign.example.com", "/", 404, |b| {
        b == "404 page not found"
    });
    let body = expect(&w, "missing.example.com", "/", 503, |_| true);
    assert!(body.contains("service default/nobody not found"), "{body}");
    expect(&w, "missing.example.com", "/sub", 404, |b| {
        b == "404 page not found"
    });

    w.step("TLS: the Secret's certificate by SNI over HTTP/2, the fallback for other names");
    let resolve = format!("secure.example.com:443:{NODE_IP}");
    let cacert = w.dir.join("secure.crt");
    wait_until_every(
        DEADLINE,
        POLL_EVERY,
        "HTTPS with the Secret's certificate",
        || {
            let (ok, out, err) = curl(
                &w,
                &[
                    "--resolve",
                    &resolve,
                    "--cacert",
                    &cacert.to_string_lossy(),
                    "-w",
                    "\n%{http_version}",
                    "https://secure.example.com/",
                ],
            );
            (ok && out == "web-1\n\n2")
                .then_some(())
                .ok_or(format!("{ok} {out:?} {err}"))
        },
    );
    let other = format!("other.example.com:443:{NODE_IP}");
    let (ok, _, err) = curl(
        &w,
        &["-vk", "--resolve", &other, "https://other.example.com/"],
    );
    assert!(ok, "{err}");
    assert!(err.contains("subject: CN=orc-ingress-default"), "{err}");
    let (ok, _, err) = curl(
        &w,
        &[
            "--resolve",
            &other,
            "--cacert",
            &cacert.to_string_lossy(),
            "https://other.example.com/",
        ],
    );
    assert!(!ok, "the fallback certificate is not the Secret's: {err}");

    w.step("status.loadBalancer lists the node for our Ingresses only");
    w.wait_for("routes to have the node address", || {
        w.kubectl_out(&[
            "get",
            "ingress",
            "routes",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[*].ip}",
        ]) == NODE_IP
    });
    let table = w.kubectl_ok(&["get", "ingress"]);
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row("routes")[1..3],
        [
            "orc",
            "web.example.com,*.apps.example.com,secure.example.com"
        ],
        "{table}"
    );
    assert!(
        table.contains(NODE_IP) && table.contains("80, 443"),
        "{table}"
    );
    assert_eq!(
        row("foreign")[1..4],
        ["nginx", "foreign.example.com", "80"],
        "{table}"
    );
    assert_eq!(
        w.kubectl_out(&[
            "get",
            "ingress",
            "foreign",
            "-o",
            "jsonpath={.status.loadBalancer}"
        ]),
        "{}"
    );

    w.step("A default backend takes what no rule matches");
    w.apply(FALLBACK);
    expect(&w, "nobody.example.com", "/", 200, |b| b == "api-1");
    expect(&w, "web.example.com", "/api/", 200, |b| b == "api-1");

    w.step("Invalid Ingresses are refused with upstream's messages");
    let bad = FALLBACK.replace("name: fallback", "name: bad").replace(
        "  defaultBackend:\n",
        "  rules:\n  - host: 10.0.0.1\n    http:\n      paths:\n      - path: api\n        pathType: Exact\n        backend:\n          service:\n            name: api\n            port:\n              number: 80\n  defaultBackend:\n",
    );
    let out = w
        .kubectl_cmd(&["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(bad.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address"), "{err}");
    assert!(
        err.contains(
            "spec.rules[0].http.paths[0].path: Invalid value: \"api\": must be an absolute path"
        ),
        "{err}"
    );
}
