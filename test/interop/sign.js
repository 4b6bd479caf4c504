'use strict';
// Signs webhook payloads with the processors' own published SDKs for
// test/t/050_webhook_interop.pl: Stripe's webhooks.generateTestHeaderString
// and Standard Webhooks' Webhook.sign; the http driver's "hmac-sha256"
// scheme has no SDK and is signed with node:crypto.  Nothing here touches
// the network.
//
// stdin:  a JSON array of {scheme, secret, body, timestamp, msg_id}
// stdout: a JSON array of header objects, one per input, in order
const crypto = require('node:crypto');
const Stripe = require('stripe');
const { Webhook } = require('standardwebhooks');

const stripe = new Stripe('sk_test_interop_no_network');

function sign(c) {
	switch (c.scheme) {
	case 'stripe': {
		const header = stripe.webhooks.generateTestHeaderString({
			payload: c.body, secret: c.secret, timestamp: c.timestamp,
		});
		// the SDK must accept what it produced (sanity check of the inputs)
		if (c.timestamp > Date.now() / 1000 - 300)
			stripe.webhooks.constructEvent(c.body, header, c.secret);
		return { 'Stripe-Signature': header };
	}
	case 'standard': {
		const wh = new Webhook(c.secret);
		const headers = {
			'webhook-id': c.msg_id,
			'webhook-timestamp': String(c.timestamp),
			'webhook-signature': wh.sign(c.msg_id, new Date(c.timestamp * 1000), c.body),
		};
		if (c.timestamp > Date.now() / 1000 - 300)
			wh.verify(c.body, headers);
		return headers;
	}
	case 'hmac-sha256':
		return {
			'X-Withdrawal-Timestamp': String(c.timestamp),
			'X-Withdrawal-Signature': 'v1=' + crypto.createHmac('sha256', c.secret)
				.update(`${c.timestamp}.${c.body}`).digest('hex'),
		};
	default:
		throw new Error(`unknown scheme ${c.scheme}`);
	}
}

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', () => {
	process.stdout.write(JSON.stringify(JSON.parse(input).map(sign)));
});
