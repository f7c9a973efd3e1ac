"""The service with no trained artifacts at all: it still serves, from catalog popularity."""


async def test_service_starts_without_artifacts_and_serves_popularity(client):
    ready = (await client.get("/ready")).json()
    assert set(ready["models"].values()) == {None}
    home = await client.get("/recommendations/home", params={"user_id": "fresh_user"})
    assert home.status_code == 200
    body = home.json()
    assert body["strategy"] == "new_user" and len(body["items"]) == 20
    assert body["model_version"] is None
    assert all(item["reasons"] for item in body["items"])


async def test_search_without_models_falls_back_to_popular_products(client):
    response = await client.get("/recommendations/search", params={"q": "earbuds", "limit": 5})
    assert response.status_code == 200
    body = response.json()
    assert body["fallback_reason"] == "no_models_used_trending"
    assert len(body["items"]) == 5 and body["model_version"] is None
