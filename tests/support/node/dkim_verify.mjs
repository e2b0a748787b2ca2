// Verify every DKIM signature of the message on stdin with mailauth (Node.js), an
// implementation independent of the dkimpy that Volley signs with, asking only the test
// DNS server given as arguments: IP PORT.  Prints one line per signature:
// "domain selector algorithm result".  Used by tests/support/dkim_check.py.
import { dkimVerify } from 'mailauth';
import dns from 'node:dns';
import fs from 'node:fs';

const [ip, port] = process.argv.slice(2);
const resolver = new dns.promises.Resolver({ timeout: 5000, tries: 1 });
resolver.setServers([`${ip}:${port}`]);
const resolve = async (name, rrtype) => {
  if (rrtype !== 'TXT') {
    throw Object.assign(new Error(`no ${rrtype} in this test`), { code: 'ENOTFOUND' });
  }
  return resolver.resolveTxt(name);
};
const result = await dkimVerify(fs.readFileSync(0), { resolver: resolve });
for (const r of result.results) {
  console.log(`${r.signingDomain} ${r.selector} ${r.algo} ${r.status.result}`);
}
