// Tocsin alert bridge: Zabbix webhook media type script (Alerts -> Media types -> Create, type Webhook).
// Zabbix passes the media type parameters as a JSON string in `value`. The bridge needs the parameter
// object as-is, plus two parameters used only here: `tocsin_url` (the bridge's /api/v1/alerts/zabbix URL)
// and `tocsin_token` (the bearer token of sources.zabbix in alerts.yaml). See docs/alerts.md.
var params = JSON.parse(value);
var url = params.tocsin_url;
var token = params.tocsin_token;
if (!url || !token) {
    throw 'tocsin_url and tocsin_token parameters are required';
}
delete params.tocsin_url;
delete params.tocsin_token;

var request = new HttpRequest();
request.addHeader('Content-Type: application/json');
request.addHeader('Authorization: Bearer ' + token);
if (params.HTTPProxy) {
    request.setProxy(params.HTTPProxy);
}
var response = request.post(url, JSON.stringify(params));
var status = request.getStatus();
Zabbix.log(4, '[Tocsin webhook] HTTP ' + status + ': ' + response);
if (status < 200 || status >= 300) {
    throw 'Tocsin alert bridge answered HTTP ' + status + ': ' + response;
}
return 'OK';
